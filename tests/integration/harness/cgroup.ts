/**
 * Memory cgroups for integration tests: a "container" with a memory limit that test processes start in.
 *
 * Uses cgroup v2 when `/sys/fs/cgroup` is a cgroup2 mount (a child with `memory.max`; the root must delegate
 * the memory controller), else the cgroup v1 memory hierarchy `/sys/fs/cgroup/memory` (a child with
 * `memory.limit_in_bytes`). A process joins by writing its pid to `cgroup.procs` before it execs the program
 * ({@linkcode MemoryCgroup.wrapper}), so everything it starts is inside too.
 *
 * Cgroups are named `apt<tag>-<name>` after the harness run, so that a crashed run's empty cgroups are
 * removed by the next `cleanupLeftovers()` ({@linkcode removeLeftoverCgroups}).
 *
 * @module
 */

const V2_ROOT = "/sys/fs/cgroup";
const V1_ROOT = "/sys/fs/cgroup/memory";

/** Which cgroup hierarchy holds the memory controller, and where. */
export interface MemoryHierarchy {
  readonly version: 1 | 2;
  readonly root: string;
}

function fileExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The memory hierarchy to make test cgroups in, or a one-line reason why there is none usable.
 */
export function memoryHierarchy(): MemoryHierarchy | string {
  if (fileExists(`${V2_ROOT}/cgroup.controllers`)) {
    const delegated = Deno.readTextFileSync(`${V2_ROOT}/cgroup.subtree_control`).split(/\s+/);
    return delegated.includes("memory") ? { version: 2, root: V2_ROOT } : (
      `${V2_ROOT} is cgroup v2 but does not delegate the memory controller to its children ` +
      `(no "memory" in ${V2_ROOT}/cgroup.subtree_control)`
    );
  }
  if (fileExists(`${V1_ROOT}/memory.limit_in_bytes`)) return { version: 1, root: V1_ROOT };
  return `no memory cgroup: ${V2_ROOT} is not cgroup v2 and ${V1_ROOT} is not a cgroup v1 memory hierarchy`;
}

/** A memory cgroup made by {@linkcode createMemoryCgroup}. */
export interface MemoryCgroup {
  readonly path: string;
  readonly version: 1 | 2;
  readonly limitBytes: number;
  /**
   * A command prefix that moves itself into this cgroup and then execs its arguments (same pid):
   * `[...wrapper, program, ...args]`.
   */
  readonly wrapper: readonly string[];
  /** Pids in the cgroup now. */
  pids(): number[];
  /** How many processes the kernel's OOM killer has killed in this cgroup (v1 `oom_control`, v2 `events`). */
  oomKills(): number;
  /**
   * Anonymous memory in the cgroup now (v1 `total_rss`, v2 `anon` of `memory.stat`): what cannot be dropped
   * like the page cache, which fills any limit.
   */
  anonBytes(): number;
  /** The most memory the cgroup has used (v1 `max_usage_in_bytes`, v2 `memory.peak`), if the kernel says. */
  peakBytes(): number | undefined;
  /** Removes the cgroup; it must be empty (waits up to 10 s for exiting processes to leave). */
  remove(): Promise<void>;
}

function counter(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  if (!m) throw new Error(`no "${name}" counter in:\n${text}`);
  return Number(m[1]);
}

/**
 * Makes cgroup `<root>/<name>` with a memory limit of `limitBytes`.
 *
 * @throws when there is no usable memory hierarchy, or the cgroup already exists.
 */
export async function createMemoryCgroup(name: string, limitBytes: number): Promise<MemoryCgroup> {
  const h = memoryHierarchy();
  if (typeof h === "string") throw new Error(`cannot make a memory cgroup: ${h}`);
  const path = `${h.root}/${name}`;
  await Deno.mkdir(path); // fails if it exists: never take over someone else's cgroup
  try {
    await Deno.writeTextFile(
      `${path}/${h.version === 2 ? "memory.max" : "memory.limit_in_bytes"}`,
      String(limitBytes),
    );
    if (h.version === 2) await Deno.writeTextFile(`${path}/memory.swap.max`, "0").catch(() => {});
  } catch (e) {
    await Deno.remove(path).catch(() => {});
    throw e;
  }
  const read = (file: string) => Deno.readTextFileSync(`${path}/${file}`);
  const pids = () => read("cgroup.procs").split("\n").filter((l) => l !== "").map(Number);
  return {
    path,
    version: h.version,
    limitBytes,
    wrapper: ["/bin/sh", "-c", 'echo $$ > "$0" || exit 125; exec "$@"', `${path}/cgroup.procs`],
    pids,
    oomKills: () => counter(read(h.version === 2 ? "memory.events" : "memory.oom_control"), "oom_kill"),
    anonBytes: () => counter(read("memory.stat"), h.version === 2 ? "anon" : "total_rss"),
    peakBytes: () => {
      try {
        return Number(read(h.version === 2 ? "memory.peak" : "memory.max_usage_in_bytes").trim());
      } catch {
        return undefined; // memory.peak is Linux 5.19+
      }
    },
    remove: async () => {
      const deadline = Date.now() + 10_000;
      while (true) {
        try {
          await Deno.remove(path);
          return;
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) return;
          if (Date.now() >= deadline) {
            throw new Error(
              `cannot remove cgroup ${path} (processes still in it: ${pids().join(" ")}): ${e}`,
            );
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    },
  };
}

/**
 * Removes the empty test cgroups (`apt<tag>-…`) of runs that `isLeftover(tag)` says are gone. A cgroup that
 * still holds processes is left alone (rmdir refuses it).
 *
 * @returns The cgroups removed.
 */
export async function removeLeftoverCgroups(isLeftover: (tag: string) => boolean): Promise<string[]> {
  const h = memoryHierarchy();
  if (typeof h === "string") return [];
  const removed: string[] = [];
  for await (const e of Deno.readDir(h.root)) {
    const tag = /^apt([a-z0-9]{4})-/.exec(e.name)?.[1];
    if (!e.isDirectory || tag === undefined || !isLeftover(tag)) continue;
    try {
      await Deno.remove(`${h.root}/${e.name}`);
      removed.push(`${h.root}/${e.name}`);
    } catch {
      // still in use
    }
  }
  return removed;
}
