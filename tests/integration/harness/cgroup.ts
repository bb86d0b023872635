/**
 * Memory cgroups for integration tests: a "container" with a memory limit that test processes start in
 * ({@linkcode Harness.memoryCgroup}), and the cgroup of each start of a container node (`container.ts`).
 *
 * The memory hierarchy is found in /proc/self/mountinfo: cgroup v2 when a cgroup2 file system is mounted at
 * `/sys/fs/cgroup` (a child with `memory.max`; its parent must delegate the memory controller), else the
 * cgroup v1 hierarchy that has the memory controller (a child with `memory.limit_in_bytes`). With v1 the
 * cgroup is made below this process's own memory cgroup, so the test stays inside whatever limit the runner
 * has (and its accounting covers the test); with v2 below the root of the mounted hierarchy, the one place
 * where a child with the memory controller can always be made (v2 forbids processes in a cgroup with such
 * children). A limit above what an ancestor allows is refused: such a cgroup would not be the container it
 * claims to be.
 *
 * A process joins by writing its pid to `cgroup.procs` before it execs the program
 * ({@linkcode MemoryCgroup.wrapper}), so everything it starts is inside too; a node's init joins through a
 * cgroup mount of its own, at {@linkcode MemoryCgroup.relative}.
 *
 * Cgroups are named `apt<tag>_<name>` after the harness run, and each path is listed in the run dir (see
 * `recordCgroup()`) before the cgroup is made, so that the next `cleanupLeftovers()` removes what a crashed
 * run left.
 *
 * @module
 */

import { NETNS_PREFIX, recordCgroup, type RunDir } from "./proc.ts";

/** Where the memory controller's hierarchy is mounted, as /proc/self/mountinfo says. */
export interface CgroupMount {
  readonly version: 1 | 2;
  /** Where it is mounted, e.g. `/sys/fs/cgroup/memory`. */
  readonly mountPoint: string;
  /** The cgroup the mount shows at its mount point (mountinfo's root field; `/` unless bound from below). */
  readonly root: string;
}

/**
 * The memory hierarchy in `mountinfo` (the text of /proc/self/mountinfo), or a one-line reason why there is
 * none: cgroup2 at `/sys/fs/cgroup` first, else the cgroup v1 mount with the memory controller.
 */
export function memoryMount(mountinfo: string): CgroupMount | string {
  const mounts = mountinfo.split("\n").map((l) => {
    const [left, right] = l.split(" - ");
    const f = left?.split(" ") ?? [];
    const r = right?.split(" ") ?? [];
    return { root: f[3], mountPoint: f[4], fstype: r[0], superOptions: (r[2] ?? "").split(",") };
  });
  const v2 = mounts.find((m) => m.fstype === "cgroup2" && m.mountPoint === "/sys/fs/cgroup");
  if (v2) return { version: 2, mountPoint: v2.mountPoint, root: v2.root };
  const v1 = mounts.find((m) => m.fstype === "cgroup" && m.superOptions.includes("memory"));
  if (v1) return { version: 1, mountPoint: v1.mountPoint, root: v1.root };
  return "no memory cgroup hierarchy is mounted (neither cgroup2 at /sys/fs/cgroup nor a cgroup v1 memory one)";
}

/**
 * This process's cgroup in the hierarchy of `version`, from `procSelfCgroup` (the text of /proc/self/cgroup),
 * or undefined when it names none.
 */
export function ownCgroup(procSelfCgroup: string, version: 1 | 2): string | undefined {
  for (const line of procSelfCgroup.split("\n")) {
    const [, controllers, path] = line.split(":");
    if (path === undefined) continue;
    if (version === 2 ? controllers === "" : controllers.split(",").includes("memory")) return path;
  }
  return undefined;
}

/** Where a new memory cgroup goes: see {@linkcode memoryCgroupPlace}. */
export interface CgroupPlace {
  /** The parent's directory, as this process sees it. */
  readonly parentDir: string;
  /** The cgroup's directory, as this process sees it. */
  readonly path: string;
  /** Its path below the hierarchy's root, as a fresh mount of the hierarchy shows it. */
  readonly relative: string;
}

function join(...parts: string[]): string {
  return parts.join("/").replace(/\/+/g, "/").replace(/(.)\/$/, "$1");
}

/**
 * Where cgroup `name` goes in `mount`: below `own` (this process's cgroup; used with v1) or, with v2, below the
 * mount's root. A one-line reason when the parent is not inside what the mount shows.
 */
export function memoryCgroupPlace(mount: CgroupMount, own: string, name: string): CgroupPlace | string {
  const parent = mount.version === 1 ? own : mount.root;
  const inside = mount.root === "/" || parent === mount.root || parent.startsWith(`${mount.root}/`);
  if (!parent.startsWith("/") || !inside) {
    return `this process's cgroup ${parent} is outside the mounted hierarchy (root ${mount.root})`;
  }
  const parentDir = join(mount.mountPoint, parent.slice(mount.root.length));
  return { parentDir, path: join(parentDir, name), relative: join("/", parent, name) };
}

/** A memory cgroup made by {@linkcode createMemoryCgroup}. */
export interface MemoryCgroup {
  readonly version: 1 | 2;
  /** Its directory, as this process sees it. */
  readonly path: string;
  /** Its path below the hierarchy's root (as a fresh cgroup mount, e.g. in a node, shows it). */
  readonly relative: string;
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

/** The limit file of a cgroup dir in hierarchy `version`. */
function limitFile(version: 1 | 2): string {
  return version === 2 ? "memory.max" : "memory.limit_in_bytes";
}

/**
 * The lowest memory limit of cgroup dir `dir` and its ancestors up to the mount point of `mount` (Infinity when
 * none is set), with the cgroup that sets it. A missing file (the v2 root has no `memory.max`) sets no limit.
 */
export async function inheritedMemoryLimit(
  mount: CgroupMount,
  dir: string,
): Promise<{ bytes: number; dir: string }> {
  const { version, mountPoint } = mount;
  let lowest = { bytes: Infinity, dir };
  for (let d = dir; d === mountPoint || d.startsWith(`${mountPoint}/`); d = d.slice(0, d.lastIndexOf("/"))) {
    const text = (await Deno.readTextFile(`${d}/${limitFile(version)}`).catch(() => "max")).trim();
    const bytes = text === "max" ? Infinity : Number(text);
    if (bytes < lowest.bytes) lowest = { bytes, dir: d };
    if (d === mountPoint) break;
  }
  return lowest;
}

/**
 * Makes memory cgroup `apt<tag>_<name>` for harness run `run`, limited to `limitBytes`, after listing its path
 * in the run dir (so that a crash between the two leaves nothing `cleanupLeftovers()` does not know of).
 *
 * @throws when there is no usable memory hierarchy, an ancestor allows less than `limitBytes`, or the cgroup
 *   already exists.
 */
export async function createMemoryCgroup(
  run: Pick<RunDir, "tag" | "dir">,
  name: string,
  limitBytes: number,
): Promise<MemoryCgroup> {
  if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new Error(`createMemoryCgroup: bad cgroup name "${name}"`);
  const fail = (why: string) => new Error(`cannot make memory cgroup ${name}: ${why}`);
  const mount = memoryMount(await Deno.readTextFile("/proc/self/mountinfo"));
  if (typeof mount === "string") throw fail(mount);
  const { version } = mount;
  const own = ownCgroup(await Deno.readTextFile("/proc/self/cgroup"), version);
  if (own === undefined) throw fail(`/proc/self/cgroup names no cgroup v${version} memory cgroup`);
  const place = memoryCgroupPlace(mount, own, `${NETNS_PREFIX}${run.tag}_${name}`);
  if (typeof place === "string") throw fail(place);
  const { path, relative, parentDir } = place;
  if (version === 2) {
    const delegated = await Deno.readTextFile(`${parentDir}/cgroup.subtree_control`);
    if (!delegated.split(/\s+/).includes("memory")) {
      throw fail(`${parentDir} does not delegate the memory controller (not in its cgroup.subtree_control)`);
    }
  }
  const inherited = await inheritedMemoryLimit(mount, parentDir);
  if (inherited.bytes < limitBytes) {
    throw fail(
      `a limit of ${limitBytes} bytes is above the ${inherited.bytes} that ${inherited.dir} allows, so it would ` +
        `not be that container: run the tests where more memory is allowed`,
    );
  }
  await recordCgroup(run.tag, run.dir, path);
  await Deno.mkdir(path); // fails if it exists: never take over someone else's cgroup
  try {
    await Deno.writeTextFile(`${path}/${limitFile(version)}`, String(limitBytes));
    if (version === 2) await Deno.writeTextFile(`${path}/memory.swap.max`, "0").catch(() => {});
  } catch (e) {
    await Deno.remove(path).catch(() => {});
    throw e;
  }
  const read = (file: string) => Deno.readTextFileSync(`${path}/${file}`);
  const pids = () => read("cgroup.procs").split("\n").filter((l) => l !== "").map(Number);
  return {
    version,
    path,
    relative,
    limitBytes,
    wrapper: ["/bin/sh", "-c", 'echo $$ > "$0" || exit 125; exec "$@"', `${path}/cgroup.procs`],
    pids,
    oomKills: () => counter(read(version === 2 ? "memory.events" : "memory.oom_control"), "oom_kill"),
    anonBytes: () => counter(read("memory.stat"), version === 2 ? "anon" : "total_rss"),
    peakBytes: () => {
      try {
        return Number(read(version === 2 ? "memory.peak" : "memory.max_usage_in_bytes").trim());
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
