/**
 * Small text helpers shared by messages and reports.
 *
 * @module
 */

/** An error's message, or the thrown value as text when it is not an Error. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Bytes in binary units with one decimal: `512 B`, `5.5 MiB`, `1.2 GiB`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}
