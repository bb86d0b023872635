import assert from "node:assert/strict";

import {
  type GtidComparison,
  GtidParseError,
  type GtidSet,
  MariadbGtidSet,
  type MysqlGtidEntry,
  MysqlGtidSet,
  parseGtidSet,
} from "../../src/mysql/gtid.ts";

// Upper-case source UUIDs as the manual prints them; the canonical form is lowercase.
const A = "3E11FA47-71CA-11E1-9E33-C80AA9429562";
const B = "4D22FB58-82DB-22F2-AF44-D91BB953A673";
const a = A.toLowerCase();
const b = B.toLowerCase();

const MAX_GNO = "9223372036854775807"; // 2^63-1
const MAX_GNO_PLUS_ONE = "9223372036854775808"; // 2^63
const MAX_U32 = "4294967295"; // 2^32-1
const MAX_SEQ_NO = "18446744073709551615"; // 2^64-1
const MAX_SEQ_NO_PLUS_ONE = "18446744073709551616"; // 2^64

const my = (text: string): MysqlGtidSet => MysqlGtidSet.parse(text);
const maria = (text: string): MariadbGtidSet => MariadbGtidSet.parse(text);

/** Asserts that parsing fails with a GtidParseError whose message matches exactly or by pattern. */
function assertParseError(parse: () => unknown, expected: string | RegExp): void {
  assert.throws(parse, (error: unknown) => {
    assert.ok(error instanceof GtidParseError, `expected GtidParseError, got ${String(error)}`);
    if (typeof expected === "string") assert.equal(error.message, expected);
    else assert.match(error.message, expected);
    return true;
  });
}

function mysqlError(reason: string, input: string): string {
  return `Cannot parse MySQL GTID set: ${reason}: current value is '${input}'`;
}

function mariadbError(reason: string, input: string): string {
  return `Cannot parse MariaDB GTID list: ${reason}: current value is '${input}'`;
}

// ---------------------------------------------------------------------------------------------------------
// MysqlGtidSet.parse() / toString(): canonicalisation
// ---------------------------------------------------------------------------------------------------------

const mysqlCanonical: [name: string, input: string, canonical: string][] = [
  ["returns the empty set for an empty string", "", ""],
  ["returns the empty set for whitespace only", " \n\t ", ""],
  ["accepts a single transaction", `${A}:7`, `${a}:7`],
  ["accepts a range", `${A}:1-5`, `${a}:1-5`],
  ["lowercases the source UUID", `${A}:1-5`, `${a}:1-5`],
  ["keeps an already lowercase UUID", `${a}:1-5`, `${a}:1-5`],
  ["accepts newlines after commas as printed by @@gtid_executed", `${A}:1-5,\n${B}:1-3`, `${a}:1-5,${b}:1-3`],
  ["accepts whitespace around every separator", ` ${A} : 1 - 5 : 7 ,\r\n\t${B}:3 `, `${a}:1-5:7,${b}:3`],
  ["sorts elements by UUID", `${B}:1-3,${A}:1-5`, `${a}:1-5,${b}:1-3`],
  ["sorts intervals", `${A}:20-30:1-5:10`, `${a}:1-5:10:20-30`],
  ["merges overlapping intervals", `${A}:1-5:4-9`, `${a}:1-9`],
  ["merges adjacent intervals", `${A}:1-5:6-9`, `${a}:1-9`],
  ["merges adjacent single numbers", `${A}:1:2:3:5`, `${a}:1-3:5`],
  ["absorbs contained intervals", `${A}:1-10:3-5:10`, `${a}:1-10`],
  ["prints a one-number range as a single number", `${A}:7-7`, `${a}:7`],
  ["merges repeated elements of one UUID", `${A}:1-3,${A}:4-6:10`, `${a}:1-6:10`],
  ["drops leading zeros", `${A}:007-010`, `${a}:7-10`],
  ["accepts a tagged element", `${A}:tag:1-3`, `${a}:tag:1-3`],
  ["lowercases tags", `${A}:Domain_1:1-3`, `${a}:domain_1:1-3`],
  ["parses the manual's untagged-then-tagged example", `${A}:1-5:domain_1:1-3`, `${a}:1-5:domain_1:1-3`],
  ["lets tags switch within an element", `${A}:1-5:tag1:3:7-9`, `${a}:1-5:tag1:3:7-9`],
  [
    "prints one element per UUID with untagged intervals first",
    `${A}:zz:1,${A}:aa:2,${A}:3`,
    `${a}:3:aa:2:zz:1`,
  ],
  ["merges a tag repeated within an element", `${A}:t:1:t:2:u:5:t:3`, `${a}:t:1-3:u:5`],
  ["merges the same tag across elements", `${A}:t:1-2,${A}:T:3-4`, `${a}:t:1-4`],
  ["prints a UUID that only has tagged GTIDs", `${B}:t:1,${A}:1`, `${a}:1,${b}:t:1`],
  ["accepts tags that start with an underscore", `${A}:_x:1`, `${a}:_x:1`],
  ["accepts a 32-character tag", `${A}:${"t".repeat(32)}:1`, `${a}:${"t".repeat(32)}:1`],
  ["accepts 2^63-1 as a transaction number", `${A}:${MAX_GNO}`, `${a}:${MAX_GNO}`],
  ["accepts a range ending at 2^63-1", `${A}:1-${MAX_GNO}`, `${a}:1-${MAX_GNO}`],
];

for (const [name, input, canonical] of mysqlCanonical) {
  Deno.test(`MysqlGtidSet.parse() ${name}`, () => {
    assert.equal(my(input).toString(), canonical);
  });
}

Deno.test("MysqlGtidSet.toString() output parses back to an equal set", () => {
  for (const [, input] of mysqlCanonical) {
    const set = my(input);
    const again = my(set.toString());
    assert.ok(again.equals(set), input);
    assert.equal(again.toString(), set.toString());
  }
});

Deno.test("MysqlGtidSet.entries() exposes sorted uuid/tag groups with bigint intervals", () => {
  const set = my(`${B}:t:5,${A}:x:2,${A}:10-12:1`);
  assert.deepEqual(set.entries(), [
    { uuid: a, tag: "", intervals: [[1n, 1n], [10n, 12n]] },
    { uuid: a, tag: "x", intervals: [[2n, 2n]] },
    { uuid: b, tag: "t", intervals: [[5n, 5n]] },
  ]);
});

// ---------------------------------------------------------------------------------------------------------
// MysqlGtidSet.parse(): malformed input
// ---------------------------------------------------------------------------------------------------------

Deno.test("MysqlGtidSet.parse() rejects an interval whose start is greater than its end", () => {
  const input = `${A}:5-3`;
  assertParseError(() => my(input), mysqlError("interval '5-3' has a start greater than its end", input));
});

Deno.test("MysqlGtidSet.parse() rejects transaction number zero", () => {
  const input = `${A}:0`;
  assertParseError(
    () => my(input),
    mysqlError("transaction number must be at least 1 in interval '0'", input),
  );
});

Deno.test("MysqlGtidSet.parse() rejects 2^63 as a transaction number", () => {
  const input = `${A}:${MAX_GNO_PLUS_ONE}`;
  assertParseError(
    () => my(input),
    mysqlError(
      `transaction number ${MAX_GNO_PLUS_ONE} in interval '${MAX_GNO_PLUS_ONE}' exceeds the maximum ${MAX_GNO}`,
      input,
    ),
  );
});

Deno.test("MysqlGtidSet.parse() rejects a bad source UUID", () => {
  const input = "not-a-uuid:1-5";
  assertParseError(() => my(input), mysqlError("invalid source UUID 'not-a-uuid'", input));
});

Deno.test("MysqlGtidSet.parse() rejects a trailing comma", () => {
  const input = `${A}:1-5,`;
  assertParseError(() => my(input), mysqlError("empty element after trailing comma", input));
});

Deno.test("MysqlGtidSet.parse() reports the raw input, newlines included", () => {
  const input = `${A}:1-5,\n${B}:0`;
  assertParseError(
    () => my(input),
    mysqlError("transaction number must be at least 1 in interval '0'", input),
  );
});

const mysqlMalformed: [name: string, input: string, pattern: RegExp][] = [
  ["a UUID without interval", A, /: missing interval after source UUID '3E11FA47-[^']*': current value is/],
  ["a UUID followed by a bare colon", `${A}:`, /: missing interval after source UUID /],
  ["a trailing colon after intervals", `${A}:1-5:`, /: missing interval after source UUID /],
  ["a tag without interval", `${A}:tag`, /: missing interval after tag 'tag': /],
  ["a tag followed by another tag", `${A}:t1:t2:1`, /: missing interval after tag 't1': /],
  ["a tag without interval after intervals", `${A}:1-5:tag`, /: missing interval after tag 'tag': /],
  ["an empty tag", `${A}::1`, /: empty tag in /],
  ["an empty tag after intervals", `${A}:1-5::3`, /: empty tag in /],
  ["a zero interval start", `${A}:0-3`, /: transaction number must be at least 1 in interval '0-3': /],
  ["a non-numeric interval end", `${A}:1-x`, /: invalid interval '1-x': /],
  ["a number followed by letters", `${A}:12abc`, /: invalid interval '12abc': /],
  ["a decimal number", `${A}:1.5`, /: invalid interval '1.5': /],
  ["a negative number", `${A}:-3`, /: invalid interval '-3': /],
  ["an open-ended range", `${A}:3-`, /: invalid interval '3-': /],
  ["a range with three numbers", `${A}:1-2-3`, /: invalid interval '1-2-3': /],
  ["a plus sign", `${A}:+3`, /: invalid interval '\+3': /],
  ["whitespace inside a number", `${A}:1 2`, /: invalid interval '1 2': /],
  [
    "an overflowing interval end",
    `${A}:1-${MAX_GNO_PLUS_ONE}`,
    /: transaction number 9223372036854775808 in /,
  ],
  ["a huge transaction number", `${A}:99999999999999999999999`, /exceeds the maximum 9223372036854775807/],
  ["a tag with a dash", `${A}:ta-g:1`, /: invalid tag 'ta-g' /],
  ["a 33-character tag", `${A}:${"t".repeat(33)}:1`, /: invalid tag 't{33}' \(expected/],
  ["a non-ASCII tag", `${A}:tåg:1`, /: invalid tag 'tåg' /],
  [
    "a UUID with a non-hex digit",
    `${A.slice(0, -1)}Z:1`,
    /: invalid source UUID '3E11FA47-71CA-11E1-9E33-C80AA942956Z'/,
  ],
  ["a UUID without dashes", `${A.replaceAll("-", "")}:1`, /: invalid source UUID /],
  ["a truncated UUID", `${A.slice(0, -2)}:1`, /: invalid source UUID /],
  ["a UUID with inner whitespace", `${A.slice(0, 8)} ${A.slice(8)}:1`, /: invalid source UUID /],
  ["an interval without UUID", "1-5", /: invalid source UUID '1-5'/],
  ["a leading comma", `,${A}:1`, /: empty element: /],
  ["two consecutive commas", `${A}:1,,${B}:1`, /: empty element: /],
  ["a lone comma", ",", /: empty element: /],
  ["a comma followed by whitespace only", `${A}:1, \n`, /: empty element after trailing comma: /],
];

for (const [name, input, pattern] of mysqlMalformed) {
  Deno.test(`MysqlGtidSet.parse() rejects ${name}`, () => {
    assertParseError(() => my(input), pattern);
  });
}

Deno.test("GtidParseError behaviour: is a SyntaxError carrying flavour, input and reason", () => {
  const input = `${A}:5-3`;
  try {
    my(input);
    assert.fail("parse should have thrown");
  } catch (error) {
    assert.ok(error instanceof GtidParseError);
    assert.ok(error instanceof SyntaxError);
    assert.equal(error.name, "GtidParseError");
    assert.equal(error.flavour, "mysql");
    assert.equal(error.input, input);
    assert.equal(error.reason, "interval '5-3' has a start greater than its end");
  }
  const mariadbError = new GtidParseError("mariadb", "empty element", ",");
  assert.equal(mariadbError.message, "Cannot parse MariaDB GTID list: empty element: current value is ','");
});

// ---------------------------------------------------------------------------------------------------------
// MysqlGtidSet: basic accessors
// ---------------------------------------------------------------------------------------------------------

Deno.test("MysqlGtidSet.empty() returns an empty set that prints as an empty string", () => {
  const empty = MysqlGtidSet.empty();
  assert.ok(empty.isEmpty());
  assert.equal(empty.toString(), "");
  assert.equal(empty.count(), 0n);
  assert.deepEqual(empty.entries(), []);
  assert.ok(empty.equals(my("")));
  assert.equal(empty.flavour, "mysql");
});

Deno.test("MysqlGtidSet.isEmpty() is false as soon as one transaction is present", () => {
  assert.equal(my(`${A}:1`).isEmpty(), false);
  assert.equal(my(`${A}:t:1`).isEmpty(), false);
});

const mysqlCounts: [input: string, count: bigint][] = [
  ["", 0n],
  [`${A}:7`, 1n],
  [`${A}:1-5:7,${B}:t:1-10`, 16n],
  [`${A}:1-5:3-8`, 8n],
  [`${A}:1-${MAX_GNO}`, (1n << 63n) - 1n],
  [`${A}:1-${MAX_GNO},${B}:1-${MAX_GNO}`, (1n << 64n) - 2n],
];

for (const [input, count] of mysqlCounts) {
  Deno.test(`MysqlGtidSet.count() counts ${count} transactions in '${input.replaceAll("\n", " ")}'`, () => {
    assert.equal(my(input).count(), count);
  });
}

Deno.test("MysqlGtidSet.toJSON() serialises as the canonical string", () => {
  assert.equal(JSON.stringify({ executed: my(`${B}:1,${A}:1-3`) }), `{"executed":"${a}:1-3,${b}:1"}`);
});

Deno.test("MysqlGtidSet.equals() ignores formatting differences", () => {
  assert.ok(my(`${A}:1-3:4-5, ${B}:1`).equals(my(`${b}:1,${a}:1:2-5`)));
});

Deno.test("MysqlGtidSet.equals() distinguishes different sets", () => {
  assert.equal(my(`${A}:1-5`).equals(my(`${A}:1-6`)), false);
  assert.equal(my(`${A}:1-5`).equals(my(`${B}:1-5`)), false);
  assert.equal(my(`${A}:1-5`).equals(my(`${A}:t:1-5`)), false);
  assert.equal(my(`${A}:1-5`).equals(my(`${A}:1-2:4-5`)), false);
  assert.equal(my(`${A}:1-5`).equals(MysqlGtidSet.empty()), false);
});

Deno.test("MysqlGtidSet behaviour: values are frozen and operations leave operands untouched", () => {
  const left = my(`${A}:1-10`);
  const right = my(`${A}:3-5,${B}:1`);
  assert.ok(Object.isFrozen(left));
  assert.ok(Object.isFrozen(left.entries()));
  assert.ok(Object.isFrozen(left.entries()[0]));
  assert.ok(Object.isFrozen(left.entries()[0].intervals));
  assert.ok(Object.isFrozen(left.entries()[0].intervals[0]));
  assert.throws(() => {
    (left as unknown as { flavour: string }).flavour = "mariadb";
  }, TypeError);
  assert.throws(() => {
    (left.entries() as MysqlGtidEntry[]).push({ uuid: b, tag: "", intervals: [] });
  }, TypeError);
  left.subtract(right);
  left.union(right);
  right.union(left);
  assert.equal(left.toString(), `${a}:1-10`);
  assert.equal(right.toString(), `${a}:3-5,${b}:1`);
});

// ---------------------------------------------------------------------------------------------------------
// MysqlGtidSet: contains / subtract / union / compare truth tables
// ---------------------------------------------------------------------------------------------------------

const mysqlContains: [name: string, left: string, right: string, expected: boolean][] = [
  ["is true for two empty sets", "", "", true],
  ["is true for any set against the empty set", `${A}:1-5`, "", true],
  ["is false for the empty set against a non-empty set", "", `${A}:1`, false],
  ["is true for an equal set", `${A}:1-5:7`, `${a}:7:1-5`, true],
  ["is true for a sub-range", `${A}:1-10`, `${A}:3-5`, true],
  ["is false for a super-range", `${A}:3-5`, `${A}:1-10`, false],
  ["is false for a disjoint UUID", `${A}:1-5`, `${B}:1-5`, false],
  ["is false when the other spans a gap", `${A}:1-5:7-9`, `${A}:4-8`, false],
  ["is true for points on both sides of a gap", `${A}:1-5:7-9`, `${A}:2:8`, true],
  ["is false for a partial overlap", `${A}:1-5`, `${A}:4-6`, false],
  ["is false when only the untagged GTIDs match a tagged one", `${A}:1-5`, `${A}:t:1`, false],
  ["is false when only a tagged GTID matches an untagged one", `${A}:t:1-5`, `${A}:1`, false],
  ["is false when tags differ", `${A}:t:1-5`, `${A}:u:1`, false],
  ["is true for matching tags", `${A}:1:t:1-5`, `${A}:t:2-4`, true],
  ["is true across several UUIDs", `${A}:1-5,${B}:1-5`, `${A}:2,${B}:5`, true],
  ["is false when one of several UUIDs is missing", `${A}:1-5`, `${A}:2,${B}:5`, false],
  ["is true at the 2^63-1 limit", `${A}:1-${MAX_GNO}`, `${A}:${MAX_GNO}`, true],
];

for (const [name, left, right, expected] of mysqlContains) {
  Deno.test(`MysqlGtidSet.contains() ${name}`, () => {
    assert.equal(my(left).contains(my(right)), expected);
  });
}

const mysqlSubtract: [name: string, left: string, right: string, expected: string][] = [
  ["splits an interval around a removed range", `${A}:1-10`, `${A}:3-5`, `${a}:1-2:6-10`],
  ["returns the same set when removing the empty set", `${A}:1-10`, "", `${a}:1-10`],
  ["returns the empty set from the empty set", "", `${A}:1-10`, ""],
  ["returns the empty set when removing itself", `${A}:1-10:t:3`, `${A}:1-10:t:3`, ""],
  ["returns the empty set when removing a superset", `${A}:3-5`, `${A}:1-10,${B}:1`, ""],
  ["leaves a disjoint UUID untouched", `${A}:1-5,${B}:1-3`, `${B}:1-3`, `${a}:1-5`],
  ["trims the end of an interval", `${A}:1-10`, `${A}:5-15`, `${a}:1-4`],
  ["trims the start of an interval", `${A}:5-15`, `${A}:1-10`, `${a}:11-15`],
  ["punches several holes", `${A}:1-20`, `${A}:2:4:6-8`, `${a}:1:3:5:9-20`],
  ["removes one range spanning several intervals", `${A}:1-3:5-7:9-11`, `${A}:2-10`, `${a}:1:11`],
  ["removes single transactions at the edges", `${A}:1-10`, `${A}:1:10`, `${a}:2-9`],
  ["keeps tagged GTIDs when removing untagged ones", `${A}:1-5:t:1-5`, `${A}:1-5`, `${a}:t:1-5`],
  ["keeps untagged GTIDs when removing tagged ones", `${A}:1-5:t:1-5`, `${A}:t:1-5`, `${a}:1-5`],
  [
    "finds the errant transactions of an old primary",
    `${A}:1-100,${B}:1-7`,
    `${A}:1-100,${B}:1-5`,
    `${b}:6-7`,
  ],
  ["handles the 2^63-1 limit", `${A}:1-${MAX_GNO}`, `${A}:2-${MAX_GNO}`, `${a}:1`],
];

for (const [name, left, right, expected] of mysqlSubtract) {
  Deno.test(`MysqlGtidSet.subtract() ${name}`, () => {
    assert.equal(my(left).subtract(my(right)).toString(), expected);
  });
}

const mysqlUnion: [name: string, left: string, right: string, expected: string][] = [
  ["with the empty set returns an equal set", `${A}:1-5`, "", `${a}:1-5`],
  ["of two empty sets is empty", "", "", ""],
  ["merges overlapping intervals", `${A}:1-5`, `${A}:4-9`, `${a}:1-9`],
  ["merges adjacent intervals", `${A}:1-5`, `${A}:6-9`, `${a}:1-9`],
  ["fills a gap", `${A}:1-3:7-9`, `${A}:4-6`, `${a}:1-9`],
  ["keeps disjoint UUIDs sorted", `${B}:1`, `${A}:2`, `${a}:2,${b}:1`],
  ["keeps tags apart from untagged GTIDs", `${A}:1-3`, `${A}:t:4-6`, `${a}:1-3:t:4-6`],
  ["merges intervals of the same tag", `${A}:t:1-3`, `${A}:T:4-6`, `${a}:t:1-6`],
];

for (const [name, left, right, expected] of mysqlUnion) {
  Deno.test(`MysqlGtidSet.union() ${name}`, () => {
    assert.equal(my(left).union(my(right)).toString(), expected);
    assert.equal(my(right).union(my(left)).toString(), expected, "union must be commutative");
  });
}

Deno.test("MysqlGtidSet.union() and subtract() restore the original set", () => {
  const base = my(`${A}:1-5:9,${B}:t:2-4`);
  const extra = my(`${A}:6-8:20,${B}:1`);
  assert.ok(base.union(extra).subtract(extra).equals(base));
  assert.ok(base.union(extra).contains(base));
  assert.ok(base.union(extra).contains(extra));
});

const mysqlCompare: [name: string, left: string, right: string, expected: GtidComparison][] = [
  ["reports equal sets written differently", `${A}:1-3:4-5`, `${a}:1-5`, "equal"],
  ["reports two empty sets as equal", "", "", "equal"],
  ["reports the empty set as a subset", "", `${A}:1`, "subset"],
  ["reports a set as a superset of the empty set", `${A}:1`, "", "superset"],
  ["reports a strict subset", `${A}:1-5`, `${A}:1-6`, "subset"],
  ["reports a strict superset", `${A}:1-6,${B}:1`, `${A}:1-6`, "superset"],
  ["reports partial overlaps as diverged", `${A}:1-5`, `${A}:3-8`, "diverged"],
  ["reports disjoint UUIDs as diverged", `${A}:1-5`, `${B}:1-5`, "diverged"],
  ["reports tagged versus untagged as diverged", `${A}:1-5`, `${A}:t:1-5`, "diverged"],
  ["reports an errant transaction as diverged", `${A}:1-10,${B}:1`, `${A}:1-12`, "diverged"],
];

for (const [name, left, right, expected] of mysqlCompare) {
  Deno.test(`MysqlGtidSet.compare() ${name}`, () => {
    assert.equal(my(left).compare(my(right)), expected);
  });
}

// ---------------------------------------------------------------------------------------------------------
// MariadbGtidSet.parse() / toString()
// ---------------------------------------------------------------------------------------------------------

const mariadbCanonical: [name: string, input: string, canonical: string][] = [
  ["returns the empty list for an empty string", "", ""],
  ["returns the empty list for whitespace only", "  \n ", ""],
  ["accepts a single GTID", "0-1-11", "0-1-11"],
  ["accepts a state with several servers in one domain", "0-1-11,0-2-12", "0-1-11,0-2-12"],
  ["sorts by domain then server_id", "1-1-5,0-2-12,0-1-11", "0-1-11,0-2-12,1-1-5"],
  ["sorts numerically, not lexically", "10-1-1,9-1-1,0-10-1,0-9-1", "0-9-1,0-10-1,9-1-1,10-1-1"],
  ["tolerates whitespace and newlines around elements", " 0-1-11 ,\n 0-2-12\t", "0-1-11,0-2-12"],
  ["tolerates whitespace around dashes", "0 - 1 - 11", "0-1-11"],
  ["drops leading zeros", "00-01-011", "0-1-11"],
  ["accepts seq_no 0", "0-1-0", "0-1-0"],
  ["accepts seq_no 2^64-1", `0-1-${MAX_SEQ_NO}`, `0-1-${MAX_SEQ_NO}`],
  ["accepts domain and server_id 2^32-1", `${MAX_U32}-${MAX_U32}-1`, `${MAX_U32}-${MAX_U32}-1`],
  ["accepts a position listing one domain twice as a state", "0-1-5,0-2-7", "0-1-5,0-2-7"],
];

for (const [name, input, canonical] of mariadbCanonical) {
  Deno.test(`MariadbGtidSet.parse() ${name}`, () => {
    assert.equal(maria(input).toString(), canonical);
  });
}

Deno.test("MariadbGtidSet.toString() output parses back to an equal list", () => {
  for (const [, input] of mariadbCanonical) {
    const list = maria(input);
    assert.ok(maria(list.toString()).equals(list), input);
  }
});

Deno.test("MariadbGtidSet.entries() exposes numbers and bigint seq_no", () => {
  assert.deepEqual(maria(`1-3-4,0-2-${MAX_SEQ_NO}`).entries(), [
    { domain: 0, serverId: 2, seqNo: (1n << 64n) - 1n },
    { domain: 1, serverId: 3, seqNo: 4n },
  ]);
});

Deno.test("MariadbGtidSet.parse() rejects a GTID with two parts", () => {
  assertParseError(
    () => maria("0-1"),
    mariadbError("GTID '0-1' does not have the three parts domain-server_id-seq_no", "0-1"),
  );
});

Deno.test("MariadbGtidSet.parse() rejects seq_no 2^64", () => {
  const input = `0-1-${MAX_SEQ_NO_PLUS_ONE}`;
  assertParseError(
    () => maria(input),
    mariadbError(
      `seq_no ${MAX_SEQ_NO_PLUS_ONE} in GTID '${input}' is out of range (maximum ${MAX_SEQ_NO})`,
      input,
    ),
  );
});

Deno.test("MariadbGtidSet.parse() rejects a duplicate domain-server_id pair", () => {
  const input = "0-1-5, 0-2-6, 0-1-7";
  assertParseError(
    () => maria(input),
    mariadbError("duplicate domain-server_id pair 0-1 in GTID '0-1-7'", input),
  );
});

Deno.test("MariadbGtidSet.parse() rejects a negative server_id", () => {
  assertParseError(
    () => maria("0--1-5"),
    mariadbError("server_id -1 in GTID '0--1-5' is negative", "0--1-5"),
  );
});

const mariadbMalformed: [name: string, input: string, pattern: RegExp][] = [
  ["a GTID with four parts", "0-1-2-3", /: GTID '0-1-2-3' does not have the three parts /],
  ["a GTID with one part", "42", /: GTID '42' does not have the three parts /],
  ["a word", "abc", /: GTID 'abc' does not have the three parts /],
  ["a non-numeric server_id", "0-x-5", /: server_id 'x' in GTID '0-x-5' is not a number: /],
  ["a non-numeric domain", "d-1-5", /: domain 'd' in GTID 'd-1-5' is not a number: /],
  ["a decimal seq_no", "0-1-1.5", /: seq_no '1.5' in GTID '0-1-1.5' is not a number: /],
  ["a plus sign", "0-1-+5", /: seq_no '\+5' in GTID '0-1-\+5' is not a number: /],
  ["whitespace inside a number", "0-1-1 2", /: seq_no '1 2' in GTID '0-1-1 2' is not a number: /],
  ["a negative domain", "-1-1-5", /: domain -1 in GTID '-1-1-5' is negative: /],
  ["a negative seq_no", "0-1--5", /: seq_no -5 in GTID '0-1--5' is negative: /],
  ["a missing seq_no", "0-1-", /: missing seq_no in GTID '0-1-': /],
  ["a missing server_id", "0--5", /: missing server_id in GTID '0--5': /],
  [
    "a domain of 2^32",
    "4294967296-1-1",
    /: domain 4294967296 in GTID '[^']*' is out of range \(maximum 4294967295\)/,
  ],
  ["a server_id of 2^32", "0-4294967296-1", /: server_id 4294967296 in GTID '[^']*' is out of range /],
  ["a trailing comma", "0-1-5,", /: empty element after trailing comma: current value is '0-1-5,'$/],
  ["a leading comma", ",0-1-5", /: empty element: /],
  ["two consecutive commas", "0-1-5,,0-2-3", /: empty element: /],
  ["a blank element between commas", "0-1-5, \n ,0-2-3", /: empty element: /],
  ["a duplicate pair written differently", "0-1-5,00-001-5", /: duplicate domain-server_id pair 0-1 in /],
  ["a MySQL GTID set", `${A}:1-5`, /^Cannot parse MariaDB GTID list: /],
];

for (const [name, input, pattern] of mariadbMalformed) {
  Deno.test(`MariadbGtidSet.parse() rejects ${name}`, () => {
    assertParseError(() => maria(input), pattern);
  });
}

Deno.test("MysqlGtidSet.parse() rejects a MariaDB GTID list", () => {
  assertParseError(() => my("0-1-11"), /^Cannot parse MySQL GTID set: invalid source UUID '0-1-11': /);
});

// ---------------------------------------------------------------------------------------------------------
// MariadbGtidSet: failover semantics
// ---------------------------------------------------------------------------------------------------------

Deno.test("MariadbGtidSet.contains() detects an errant old primary", () => {
  const oldPrimary = maria("0-91-4");
  const newPrimary = maria("0-91-3,0-92-4");
  assert.equal(newPrimary.contains(oldPrimary), false);
  assert.equal(oldPrimary.subtract(newPrimary).toString(), "0-91-4");
  assert.equal(oldPrimary.subtract(newPrimary).isEmpty(), false);
  assert.equal(oldPrimary.compare(newPrimary), "diverged");
});

Deno.test("MariadbGtidSet.contains() lets a caught-up old primary rejoin", () => {
  const oldPrimary = maria("0-1-11");
  const newPrimary = maria("0-1-11,0-2-12");
  assert.ok(newPrimary.contains(oldPrimary));
  assert.ok(oldPrimary.subtract(newPrimary).isEmpty());
  assert.equal(oldPrimary.compare(newPrimary), "subset");
  assert.equal(newPrimary.compare(oldPrimary), "superset");
});

Deno.test("MariadbGtidSet.compare() ranks the most advanced replica for failover", () => {
  const ahead = maria("0-1-11");
  const lagging = maria("0-1-6");
  assert.ok(ahead.contains(lagging));
  assert.equal(lagging.contains(ahead), false);
  assert.equal(ahead.compare(lagging), "superset");
  assert.equal(lagging.compare(ahead), "subset");
  assert.ok(lagging.subtract(ahead).isEmpty());
  assert.equal(ahead.subtract(lagging).toString(), "0-1-11");
});

Deno.test("MariadbGtidSet.compare() reports diverged histories", () => {
  const left = maria("0-2-15");
  const right = maria("0-3-14");
  assert.equal(left.compare(right), "diverged");
  assert.equal(right.compare(left), "diverged");
  assert.equal(left.contains(right), false);
  assert.equal(right.contains(left), false);
});

const mariadbContains: [name: string, left: string, right: string, expected: boolean][] = [
  ["is true for two empty lists", "", "", true],
  ["is true for any list against the empty list", "0-1-5", "", true],
  ["is false for the empty list against a non-empty list", "", "0-1-5", false],
  ["is true for an equal list", "0-1-5,1-2-3", "1-2-3,0-1-5", true],
  ["is true for a lower seq_no of the same server", "0-1-5", "0-1-4", true],
  ["is false for a higher seq_no of the same server", "0-1-5", "0-1-6", false],
  ["is false for another server in the same domain", "0-1-5", "0-2-1", false],
  ["is false for another domain", "0-1-5", "1-1-1", false],
  ["is true across several domains", "0-1-10,1-2-5", "0-1-10,1-2-4", true],
  ["is true at the 2^64-1 limit", `0-1-${MAX_SEQ_NO}`, "0-1-1", true],
];

for (const [name, left, right, expected] of mariadbContains) {
  Deno.test(`MariadbGtidSet.contains() ${name}`, () => {
    assert.equal(maria(left).contains(maria(right)), expected);
  });
}

const mariadbSubtract: [name: string, left: string, right: string, expected: string][] = [
  ["keeps entries missing from the other list", "0-1-11,0-2-12", "0-1-11", "0-2-12"],
  ["keeps entries with a higher seq_no, unchanged", "0-1-11,0-2-12", "0-1-5", "0-1-11,0-2-12"],
  ["drops entries the other list has with a higher seq_no", "0-1-11,0-2-12", "0-1-20,0-2-1", "0-2-12"],
  ["returns the same list when removing the empty list", "0-1-5,1-1-2", "", "0-1-5,1-1-2"],
  ["returns the empty list from the empty list", "", "0-1-5", ""],
  ["returns the empty list when removing itself", "0-1-5,1-1-2", "1-1-2,0-1-5", ""],
  ["ignores entries only the other list has", "0-1-5", "0-1-5,0-2-9,3-3-3", ""],
];

for (const [name, left, right, expected] of mariadbSubtract) {
  Deno.test(`MariadbGtidSet.subtract() ${name}`, () => {
    assert.equal(maria(left).subtract(maria(right)).toString(), expected);
  });
}

const mariadbUnion: [name: string, left: string, right: string, expected: string][] = [
  ["keeps the maximum seq_no per pair", "0-1-5,0-2-3", "0-1-7,1-1-2", "0-1-7,0-2-3,1-1-2"],
  ["with the empty list returns an equal list", "0-1-5", "", "0-1-5"],
  ["of two empty lists is empty", "", "", ""],
  ["of equal lists is the same list", "0-1-5", "0-1-5", "0-1-5"],
  ["keeps servers apart within a domain", "0-1-5", "0-2-4", "0-1-5,0-2-4"],
];

for (const [name, left, right, expected] of mariadbUnion) {
  Deno.test(`MariadbGtidSet.union() ${name}`, () => {
    assert.equal(maria(left).union(maria(right)).toString(), expected);
    assert.equal(maria(right).union(maria(left)).toString(), expected, "union must be commutative");
  });
}

const mariadbCompare: [name: string, left: string, right: string, expected: GtidComparison][] = [
  ["reports equal lists written differently", "0-2-12, 0-1-11", "0-1-11,0-2-12", "equal"],
  ["reports two empty lists as equal", "", "", "equal"],
  ["reports the empty list as a subset", "", "0-1-1", "subset"],
  ["reports a list as a superset of the empty list", "0-1-1", "", "superset"],
  ["reports a lagging list as a subset", "0-1-6,1-1-3", "0-1-11,1-1-3", "subset"],
  ["reports crossing seq_nos as diverged", "0-1-6,1-1-9", "0-1-11,1-1-3", "diverged"],
];

for (const [name, left, right, expected] of mariadbCompare) {
  Deno.test(`MariadbGtidSet.compare() ${name}`, () => {
    assert.equal(maria(left).compare(maria(right)), expected);
  });
}

// ---------------------------------------------------------------------------------------------------------
// MariadbGtidSet: accessors
// ---------------------------------------------------------------------------------------------------------

Deno.test("MariadbGtidSet.empty() returns an empty list that prints as an empty string", () => {
  const empty = MariadbGtidSet.empty();
  assert.ok(empty.isEmpty());
  assert.equal(empty.toString(), "");
  assert.deepEqual(empty.domains(), []);
  assert.ok(empty.equals(maria(" ")));
  assert.equal(empty.flavour, "mariadb");
});

Deno.test("MariadbGtidSet.equals() compares pairs and seq_no", () => {
  assert.ok(maria("0-2-12,0-1-11").equals(maria("0-1-11, 0-2-12")));
  assert.equal(maria("0-1-11").equals(maria("0-1-12")), false);
  assert.equal(maria("0-1-11").equals(maria("0-2-11")), false);
  assert.equal(maria("0-1-11").equals(maria("1-1-11")), false);
  assert.equal(maria("0-1-11").equals(maria("0-1-11,0-2-1")), false);
});

Deno.test("MariadbGtidSet.domains() lists distinct domains in ascending order", () => {
  assert.deepEqual(maria("10-1-5,0-2-12,0-1-11,2-7-1").domains(), [0, 2, 10]);
});

const mariadbPositions: [name: string, input: string, expected: string][] = [
  ["keeps the largest seq_no per domain", "0-1-11,0-2-12,1-3-4,1-1-2", "0-2-12,1-3-4"],
  ["leaves a position unchanged", "0-1-11,1-2-3", "0-1-11,1-2-3"],
  ["prefers an older server with a larger seq_no", "0-1-20,0-2-12", "0-1-20"],
  ["breaks a seq_no tie with the lowest server_id", "0-5-9,0-3-9", "0-3-9"],
  ["returns the empty list for the empty list", "", ""],
];

for (const [name, input, expected] of mariadbPositions) {
  Deno.test(`MariadbGtidSet.toPosition() ${name}`, () => {
    const position = maria(input).toPosition();
    assert.equal(position.toString(), expected);
    assert.ok(position.isPosition());
  });
}

Deno.test("MariadbGtidSet.isPosition() is false for a state with two servers in one domain", () => {
  assert.equal(maria("0-1-11,0-2-12").isPosition(), false);
  assert.ok(maria("0-1-11,1-2-12").isPosition());
  assert.ok(MariadbGtidSet.empty().isPosition());
});

Deno.test("MariadbGtidSet.toJSON() serialises as the canonical string", () => {
  assert.equal(JSON.stringify([maria("0-2-12,0-1-11")]), `["0-1-11,0-2-12"]`);
});

Deno.test("MariadbGtidSet behaviour: values are frozen and operations leave operands untouched", () => {
  const left = maria("0-1-11,0-2-12");
  const right = maria("0-1-20");
  assert.ok(Object.isFrozen(left));
  assert.ok(Object.isFrozen(left.entries()));
  assert.ok(Object.isFrozen(left.entries()[0]));
  assert.throws(() => {
    (left.entries()[0] as { seqNo: bigint }).seqNo = 99n;
  }, TypeError);
  left.union(right);
  left.subtract(right);
  left.toPosition();
  left.domains().push(7);
  assert.equal(left.toString(), "0-1-11,0-2-12");
  assert.deepEqual(left.domains(), [0]);
  assert.equal(right.toString(), "0-1-20");
});

// ---------------------------------------------------------------------------------------------------------
// parseGtidSet() and flavour mixing
// ---------------------------------------------------------------------------------------------------------

Deno.test("parseGtidSet() returns a MysqlGtidSet for the mysql flavour", () => {
  const set = parseGtidSet("mysql", `${A}:1-5`);
  assert.ok(set instanceof MysqlGtidSet);
  assert.equal(set.flavour, "mysql");
  assert.equal(set.count(), 5n);
});

Deno.test("parseGtidSet() returns a MariadbGtidSet for the mariadb flavour", () => {
  const set = parseGtidSet("mariadb", "0-1-11");
  assert.ok(set instanceof MariadbGtidSet);
  assert.equal(set.flavour, "mariadb");
  assert.deepEqual(set.domains(), [0]);
});

Deno.test("parseGtidSet() returns a union narrowable by flavour", () => {
  const texts = { mysql: `${A}:1-5`, mariadb: "0-1-11" } as const;
  for (const flavour of ["mysql", "mariadb"] as const) {
    const set: GtidSet = parseGtidSet(flavour, texts[flavour]);
    const described = set.flavour === "mysql"
      ? `${set.count()} transactions`
      : `${set.domains().length} domain`;
    assert.equal(described, flavour === "mysql" ? "5 transactions" : "1 domain");
  }
});

Deno.test("parseGtidSet() propagates the flavour's parse errors", () => {
  assertParseError(() => parseGtidSet("mysql", "0-1-11"), /^Cannot parse MySQL GTID set: /);
  assertParseError(() => parseGtidSet("mariadb", `${A}:1`), /^Cannot parse MariaDB GTID list: /);
});

Deno.test("parseGtidSet() throws a TypeError for an unknown flavour", () => {
  assert.throws(
    () => parseGtidSet("postgres" as "mysql", ""),
    { name: "TypeError", message: `Unknown GTID flavour 'postgres': expected "mysql" or "mariadb"` },
  );
});

const operations = ["equals", "contains", "subtract", "union", "compare"] as const;

for (const operation of operations) {
  Deno.test(`MysqlGtidSet.${operation}() throws a TypeError when given a MariaDB list`, () => {
    const mysql = my(`${A}:1`) as unknown as Record<string, (other: unknown) => unknown>;
    assert.throws(() => mysql[operation](maria("0-1-1")), {
      name: "TypeError",
      message: `MysqlGtidSet.${operation}() expects a MysqlGtidSet but got a MariadbGtidSet: ` +
        "MySQL and MariaDB GTIDs cannot be mixed",
    });
  });

  Deno.test(`MariadbGtidSet.${operation}() throws a TypeError when given a MySQL set`, () => {
    const mariadb = maria("0-1-1") as unknown as Record<string, (other: unknown) => unknown>;
    assert.throws(() => mariadb[operation](my(`${A}:1`)), {
      name: "TypeError",
      message: `MariadbGtidSet.${operation}() expects a MariadbGtidSet but got a MysqlGtidSet: ` +
        "MySQL and MariaDB GTIDs cannot be mixed",
    });
  });
}

Deno.test("MysqlGtidSet.contains() throws a TypeError for a value that is not a GTID set", () => {
  const mysql = my(`${A}:1`) as unknown as { contains(other: unknown): boolean };
  assert.throws(() => mysql.contains(`${A}:1`), { name: "TypeError", message: /got a string: / });
  assert.throws(() => mysql.contains(null), { name: "TypeError", message: /got null: / });
});

Deno.test("MariadbGtidSet.union() throws a TypeError for a value that is not a GTID list", () => {
  const mariadb = maria("0-1-1") as unknown as { union(other: unknown): unknown };
  assert.throws(() => mariadb.union({}), { name: "TypeError", message: /got an instance of Object: / });
});

// ---------------------------------------------------------------------------------------------------------
// Cross-check of the MySQL interval algebra against a brute-force model
// ---------------------------------------------------------------------------------------------------------

Deno.test("MysqlGtidSet.subtract() union() contains() agree with a brute-force model on random sets", () => {
  let seed = 42;
  const random = (limit: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % limit;
  };
  const randomSet = (): { text: string; members: Set<string> } => {
    const members = new Set<string>();
    const elements: string[] = [];
    for (const [uuid, tag] of [[A, ""], [A, "t"], [B, ""]]) {
      const parts: string[] = [];
      for (let i = random(4); i > 0; i--) {
        const start = 1 + random(20);
        const end = start + random(4);
        parts.push(start === end ? `${start}` : `${start}-${end}`);
        for (let n = start; n <= end; n++) members.add(`${uuid.toLowerCase()}:${tag}:${n}`);
      }
      if (parts.length > 0) elements.push([uuid, ...(tag === "" ? [] : [tag]), ...parts].join(":"));
    }
    return { text: elements.join(","), members };
  };
  const model = (set: MysqlGtidSet): Set<string> => {
    const members = new Set<string>();
    for (const { uuid, tag, intervals } of set.entries()) {
      for (const [start, end] of intervals) {
        for (let n = start; n <= end; n++) members.add(`${uuid}:${tag}:${n}`);
      }
    }
    return members;
  };
  const sorted = (members: Set<string>): string[] => [...members].sort();
  for (let round = 0; round < 300; round++) {
    const left = randomSet();
    const right = randomSet();
    const l = my(left.text);
    const r = my(right.text);
    assert.deepEqual(sorted(model(l)), sorted(left.members), left.text);
    assert.equal(l.count(), BigInt(left.members.size));
    const difference = new Set([...left.members].filter((member) => !right.members.has(member)));
    assert.deepEqual(sorted(model(l.subtract(r))), sorted(difference), `${left.text} - ${right.text}`);
    const union = new Set([...left.members, ...right.members]);
    assert.deepEqual(sorted(model(l.union(r))), sorted(union), `${left.text} + ${right.text}`);
    const contains = [...right.members].every((member) => left.members.has(member));
    assert.equal(l.contains(r), contains, `${left.text} contains ${right.text}`);
    assert.ok(my(l.toString()).equals(l));
  }
});
