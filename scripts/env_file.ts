/**
 * Docker compose's `env_file` syntax, read the way compose reads it, minus interpolation: a pure parser.
 *
 * Compose's documented rules ("Syntax for environment files", the `.env` file syntax of its interpolation
 * page), as compose implements them (compose-go's `dotenv` parser):
 *
 * - blank lines and lines whose first non-blank character is `#` are ignored; a UTF-8 BOM is skipped;
 * - `KEY=VALUE` (or `KEY: VALUE`), with an optional `export ` prefix; spaces around the key, the `=` and the
 *   value are ignored; a later line for the same key wins;
 * - unquoted values run to the end of the line; ` #` (a space, then `#`) starts a comment, a `#` without the
 *   space is part of the value;
 * - `'single'` quotes: the text literally (`\'` is a quote); `"double"` quotes: `\n`, `\r`, `\t`, `\a`, `\b`,
 *   `\f`, `\v`, `\\`, `\"` and `\$` are escapes, any other backslash is kept; quoted values may span lines, and
 *   a comment may follow the closing quote.
 *
 * What compose does and this parser refuses, with one line saying so: interpolation. Compose substitutes
 * `$NAME`, `${NAME}` and `${NAME:-default}`... in unquoted and double-quoted values; here a value is never
 * expanded, so such a value is an error (single quotes, or `$$`, give a literal `$` in both). Also refused:
 * a line with no `=` (compose would take that variable from its own environment) and octal escapes (`\0…`).
 *
 * Error messages name the line and the key, never the value: values may be passwords.
 *
 * @module
 */

/** One variable of an env file. */
export interface EnvFileEntry {
  readonly value: string;
  /** The line the assignment starts on (1-based). */
  readonly line: number;
}

/** A line of an env file that cannot be read as compose reads it. The message names the line, never a value. */
export class EnvFileError extends Error {
  constructor(readonly line: number, what: string) {
    super(`line ${line}: ${what}`);
    this.name = "EnvFileError";
  }
}

/** Compose's "space" inside a line (not a line break): tab, vertical tab, form feed, CR, space, NEL, NBSP. */
const SPACE = new Set(["\t", "\v", "\f", "\r", " ", "\u0085", "\u00a0"]);
/** Trailing white space as Go's unicode.IsSpace sees it (compose trims unquoted values with it). */
const TRAILING_SPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/;
/** Characters compose accepts in a variable name. */
const NAME_CHAR = /[A-Za-z0-9_.\-\[\]]/;

/**
 * Parses the text of an env file.
 *
 * @param text The file's contents.
 * @returns Every variable, in the order first assigned, with its value and line.
 * @throws {EnvFileError} for the first line compose would read differently or not at all.
 */
export function parseEnvFile(text: string): Map<string, EnvFileEntry> {
  const src = text.startsWith("\uFEFF") ? text.slice(1) : text;
  const out = new Map<string, EnvFileEntry>();
  let i = 0;
  let line = 1;
  while (i < src.length) {
    const c = src[i];
    if (c === "\n") {
      line++;
      i++;
      continue;
    }
    if (SPACE.has(c)) {
      i++;
      continue;
    }
    const eol = src.indexOf("\n", i) === -1 ? src.length : src.indexOf("\n", i);
    if (c === "#") {
      i = eol;
      continue;
    }
    const start = line;
    // the name, with an optional `export ` prefix
    const exported = /^export[ \t]+/.exec(src.slice(i, eol));
    if (exported) i += exported[0].length;
    let j = i;
    while (j < eol && NAME_CHAR.test(src[j])) j++;
    const key = src.slice(i, j);
    while (j < eol && SPACE.has(src[j])) j++;
    if (j === eol) {
      throw new EnvFileError(
        start,
        key === ""
          ? "expected KEY=VALUE"
          : `${key} has no '=' (write ${key}=VALUE: this script takes no value from its own environment)`,
      );
    }
    if (src[j] !== "=" && src[j] !== ":") {
      throw new EnvFileError(
        start,
        NAME_CHAR.test(src[j])
          ? `a name cannot contain a space (${key} ...)`
          : `unexpected character '${src[j]}' in the name${key === "" ? "" : ` after ${key}`}`,
      );
    }
    if (key === "") throw new EnvFileError(start, `expected a name before '${src[j]}'`);
    j++;
    while (j < eol && SPACE.has(src[j])) j++;
    let value: string;
    const quote = src[j];
    if (quote === "'" || quote === '"') {
      const q = readQuoted(src, j, quote);
      if (q === undefined) {
        throw new EnvFileError(start, `${key}: unterminated ${quoteName(quote)}-quoted value`);
      }
      line += countLines(src, j, q.end);
      // After the closing quote: blanks, then nothing or a comment.
      const restEnd = src.indexOf("\n", q.end) === -1 ? src.length : src.indexOf("\n", q.end);
      const rest = src.slice(q.end, restEnd).replace(/^[\t\v\f\r \u0085\u00a0]+/, "");
      if (rest !== "" && !rest.startsWith("#")) {
        throw new EnvFileError(
          line,
          `${key}: unexpected text after the closing quote (a comment starts with #)`,
        );
      }
      value = quote === "'" ? q.text : noInterpolation(doubleQuoteEscapes(q.text, key, start), key, start);
      i = restEnd;
    } else {
      const raw = src.slice(j, eol);
      const cut = raw.indexOf(" #");
      value = noInterpolation((cut === -1 ? raw : raw.slice(0, cut)).replace(TRAILING_SPACE, ""), key, start);
      i = eol;
    }
    out.delete(key); // a later assignment wins, and takes the later place
    out.set(key, { value, line: start });
  }
  return out;
}

function quoteName(quote: string): string {
  return quote === "'" ? "single" : "double";
}

function countLines(src: string, from: number, to: number): number {
  let n = 0;
  for (let k = from; k < to; k++) if (src[k] === "\n") n++;
  return n;
}

/**
 * The text between the quote at `open` and its closing quote, as compose's scan reads it: a backslash before
 * the quote character makes it part of the text; any other backslash is kept, with the character after it.
 */
function readQuoted(src: string, open: number, quote: string): { text: string; end: number } | undefined {
  let text = "";
  for (let k = open + 1; k < src.length; k++) {
    const c = src[k];
    if (c === quote) return { text, end: k + 1 };
    if (c === "\\" && k + 1 < src.length) {
      text += src[k + 1] === quote ? quote : c + src[k + 1];
      k++;
      continue;
    }
    text += c;
  }
  return undefined;
}

const ESCAPES: Record<string, string> = {
  a: "\x07",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
  "\\": "\\",
  '"': '"',
  // `\$` is compose's `$$`: a literal dollar sign, never a variable
  $: "$$",
};

/** Compose's escapes in a double-quoted value; `\$` becomes `$$` (resolved by {@linkcode noInterpolation}). */
function doubleQuoteEscapes(text: string, key: string, line: number): string {
  let out = "";
  for (let k = 0; k < text.length; k++) {
    const c = text[k];
    if (c !== "\\" || k + 1 === text.length) {
      out += c;
      continue;
    }
    const next = text[k + 1];
    if (next === "0") {
      throw new EnvFileError(line, `${key}: octal escapes (\\0...) are not supported here`);
    }
    out += ESCAPES[next] ?? c + next;
    k++;
  }
  return out;
}

/**
 * Compose interpolates unquoted and double-quoted values: `$$` is a literal `$`, `$NAME` and `${...}` are
 * substituted, any other `$` stays. This script substitutes nothing, so a reference is an error rather than
 * a value that differs from compose's.
 */
function noInterpolation(value: string, key: string, line: number): string {
  return value.replace(/\$(\$|[A-Za-z_{])?/g, (all, next: string | undefined) => {
    if (next === undefined) return all;
    if (next === "$") return "$";
    throw new EnvFileError(
      line,
      `${key}: the value holds a '$' that docker compose would substitute (a variable reference), ` +
        "and this script substitutes nothing: put the value in single quotes, or write $$ for a literal $",
    );
  });
}
