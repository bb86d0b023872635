// deno-lint-ignore-file no-console
/**
 * The only place that writes a command's answer to stdout or its one-line errors to stderr. Everything else
 * logs through logtape (src/log.ts), which the `no-console` lint rule enforces.
 *
 * @module
 */

/** Prints a command's output on stdout. */
export function print(text: string): void {
  console.log(text);
}

/** Prints a one-line error on stderr. */
export function printError(text: string): void {
  console.error(text);
}
