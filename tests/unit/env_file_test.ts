import { assert, assertEquals, assertThrows } from "./assert.ts";
import { EnvFileError, parseEnvFile } from "../../scripts/env_file.ts";

/** The values of an env file, as a plain object. */
function values(text: string): Record<string, string> {
  return Object.fromEntries([...parseEnvFile(text)].map(([k, e]) => [k, e.value]));
}

/** The one value of a one-variable file. */
function value(line: string): string {
  const all = values(line);
  assertEquals(Object.keys(all).length, 1, `${line}: ${JSON.stringify(all)}`);
  return Object.values(all)[0];
}

function error(text: string): EnvFileError {
  return assertThrows(() => parseEnvFile(text), EnvFileError);
}

Deno.test("parseEnvFile() reads every example of compose's documented env file syntax as compose does", () => {
  // The examples of the Compose documentation's ".env file syntax" list, with the values it gives.
  const examples: [string, string][] = [
    ["VAR=VAL", "VAL"],
    ['VAR="VAL"', "VAL"],
    ["VAR='VAL'", "VAL"],
    ["VAR: VAL", "VAL"],
    ["VAR = VAL  ", "VAL"],
    ["VAR=VAL # comment", "VAL"],
    ["VAR=VAL# not a comment", "VAL# not a comment"],
    ['VAR="VAL # not a comment"', "VAL # not a comment"],
    ['VAR="VAL" # comment', "VAL"],
    ["VAR='$OTHER'", "$OTHER"],
    ["VAR='${OTHER}'", "${OTHER}"],
    ["VAR='Let\\'s go!'", "Let's go!"],
    ['VAR="{\\"hello\\": \\"json\\"}"', '{"hello": "json"}'],
    ['VAR="some\\tvalue"', "some\tvalue"],
    ["VAR='some\\tvalue'", "some\\tvalue"],
    ["VAR=some\\tvalue", "some\\tvalue"],
    ["KEY='SOME\nVALUE'", "SOME\nVALUE"],
  ];
  for (const [line, expected] of examples) assertEquals(value(line), expected, line);
});

Deno.test("parseEnvFile() skips comments, blank lines and a BOM, and a later line wins", () => {
  const text = "\uFEFF# settings\n\n   # indented comment\nA=1\n\t\nB=two words\nA=3\n";
  assertEquals(values(text), { B: "two words", A: "3" });
  assertEquals(parseEnvFile(text).get("A")?.line, 7);
  assertEquals(values(""), {});
  assertEquals(values("# only a comment"), {});
});

Deno.test("parseEnvFile() takes the value literally: '#', '=', quotes inside, spaces inside, empty", () => {
  assertEquals(value("P=a#b"), "a#b");
  assertEquals(value("P=a=b==c"), "a=b==c");
  assertEquals(value("P==x"), "=x");
  assertEquals(value('P=it\'s "so"'), 'it\'s "so"');
  assertEquals(value("P=  padded   "), "padded");
  assertEquals(value("P=a\t#tab then hash"), "a\t#tab then hash"); // only a space starts a comment
  assertEquals(value("P= #x"), "#x"); // the blanks after '=' are not part of the value
  assertEquals(value("P="), "");
  assertEquals(value('P=""'), "");
  assertEquals(value("P=''"), "");
  assertEquals(value("P='  kept  '"), "  kept  ");
  assertEquals(value("P=back\\slash"), "back\\slash");
});

Deno.test("parseEnvFile() accepts the 'export ' prefix, and names with '.', '-' and digits", () => {
  assertEquals(values("export A=1\nexport\tB=2\n  export C='3'"), { A: "1", B: "2", C: "3" });
  assertEquals(values("exportD=4"), { exportD: "4" });
  assertEquals(values("a.b-c_1=x\n1X=y"), { "a.b-c_1": "x", "1X": "y" });
});

Deno.test("parseEnvFile() reads escapes in double quotes only, and a quote escaped in single quotes", () => {
  assertEquals(value('E="a\\nb\\rc\\td\\\\e\\"f"'), 'a\nb\rc\td\\e"f');
  assertEquals(value('E="\\a\\b\\f\\v"'), "\x07\b\f\v");
  assertEquals(value('E="\\x\\q\\\'"'), "\\x\\q\\'"); // other escapes are kept as they are
  assertEquals(value("E='a\\nb\\\\c'"), "a\\nb\\\\c");
  assertEquals(value('E="ends with a backslash\\\\"'), "ends with a backslash\\");
});

Deno.test("parseEnvFile() reads quoted values over several lines and counts the lines after them", () => {
  const text = "A='one\ntwo'\nB=\"x\ny\" # comment\nC=3\n";
  const parsed = parseEnvFile(text);
  assertEquals(parsed.get("A"), { value: "one\ntwo", line: 1 });
  assertEquals(parsed.get("B"), { value: "x\ny", line: 3 });
  assertEquals(parsed.get("C"), { value: "3", line: 5 });
  assertEquals(value("K='a'#comment right after the quote"), "a");
});

Deno.test("parseEnvFile() reads CRLF files as LF files", () => {
  assertEquals(values("A=1\r\nB='2'\r\n# c\r\nC=\"3\" # x\r\n"), { A: "1", B: "2", C: "3" });
});

Deno.test("parseEnvFile() gives a literal $ where compose would, and refuses what compose would substitute", () => {
  assertEquals(value("D=$$"), "$");
  assertEquals(value("D=a$$b"), "a$b");
  assertEquals(value('D="a$$b"'), "a$b");
  assertEquals(value('D="a\\$b"'), "a$b"); // compose turns \$ into $$
  assertEquals(value("D=cost: 5$"), "cost: 5$");
  assertEquals(value("D=a$1 $- $ $."), "a$1 $- $ $.");
  assertEquals(value("D='$NAME ${X:-y} $$'"), "$NAME ${X:-y} $$");
  for (const line of ["D=a$b", "D=${X}", 'D="$HOME"', 'D="${X:-y}"', "D=$_x", 'D="$\\$X"', "D=a\\$b"]) {
    const e = error(line);
    assert(e.message.includes("D: the value holds a '$' that docker compose would substitute"), e.message);
    assert(e.message.includes("single quotes"), e.message);
  }
});

Deno.test("parseEnvFile() refuses what compose would read differently, naming the line and never the value", () => {
  const secret = "s3cr3t-value";
  const cases: [string, string][] = [
    [`A=1\nPASSWORD\n`, "line 2: PASSWORD has no '='"],
    [`A=1\n\nMY KEY=${secret}`, "line 3: a name cannot contain a space"],
    [`A!=${secret}`, "line 1: unexpected character '!' in the name after A"],
    [`=${secret}`, "line 1: expected a name before '='"],
    [`A=1\nP='${secret}`, "line 2: P: unterminated single-quoted value"],
    [`P="${secret}\nB=2`, "line 1: P: unterminated double-quoted value"],
    [`P='${secret}' trailing`, "line 1: P: unexpected text after the closing quote"],
    [`P="a\nb" x`, "line 2: P: unexpected text after the closing quote"],
    [`P="${secret}\\012"`, "line 1: P: octal escapes"],
    [`P=${secret}$HOME`, "line 1: P: the value holds a '$'"],
  ];
  for (const [text, expected] of cases) {
    const e = error(text);
    assert(e.message.startsWith(expected), `${JSON.stringify(text)}: ${e.message}`);
    assert(!e.message.includes(secret), `the value is in the message: ${e.message}`);
    assert(!e.message.includes("\n"), `one line: ${e.message}`);
  }
});
