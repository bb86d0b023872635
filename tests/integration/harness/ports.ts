/**
 * Free TCP ports on 127.0.0.1 for servers in the root namespace.
 *
 * @module
 */

/**
 * Returns `count` distinct ports that were free on 127.0.0.1 a moment ago (all are bound to port 0 at the same
 * time, read, then closed). Another process could still take one before the server binds it.
 */
export function freePorts(count: number): number[] {
  const listeners = Array.from({ length: count }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  try {
    return listeners.map((l) => (l.addr as Deno.NetAddr).port);
  } finally {
    for (const l of listeners) l.close();
  }
}

/** One free port on 127.0.0.1 (see {@linkcode freePorts}). */
export function freePort(): number {
  return freePorts(1)[0];
}
