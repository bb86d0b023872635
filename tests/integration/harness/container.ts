/**
 * Nodes started the way a container is: the image's entrypoint (`image/entrypoint.sh`), which becomes
 * ContainerPilot (a real binary, named by `CONTAINERPILOT_BIN`), as the init of its own PID namespace, with the
 * shipped `containerpilot.json5` unmodified, in the node's network
 * namespace from the harness (`eth0` at 10.99.X.(10+k)) and in its own mount and UTS namespaces, with the
 * image's paths:
 *
 * - `/var/lib/mysql`: `<node dir>/mysql`, owned by MYSQL_OS_USER (the image's volume);
 * - `/var/lib/autopilot`: `<node dir>/autopilot`, root's, 0700 (the image's other volume);
 * - `/var/lib/autopilot/snapshots`: one dir shared by every node (compose's shared `snapshots` volume);
 * - `/run` (= `/var/run`): `<node dir>/run`, with `mysqld/` owned by MYSQL_OS_USER, so each node has its own
 *   `/var/run/containerpilot.socket` and mysqld socket;
 * - `/tmp`: `<node dir>/tmp` (1777);
 * - `/usr/local/bin`: `autopilot`, a wrapper that runs this checkout with `deno run -P=autopilot` (the
 *   permission set the image's binary is compiled with), and `containerpilot`, the binary bind-mounted;
 * - `/sys`: the sysfs of the node's network namespace (as `ip netns exec` mounts it); with a memory limit,
 *   the node's own memory cgroup at `/sys/fs/cgroup/memory` (cgroup v1) or `/sys/fs/cgroup` (v2), read-only,
 *   as a container sees its cgroup.
 *
 * `/var/lib` is an overlay of the host's, so the mount point `/var/lib/autopilot` exists without creating
 * anything on the host. The node dirs live under the harness's run dir in /tmp, so /tmp is bound last: a mount
 * over a parent would hide what is bound below it. The environment is only what a container would have: the
 * image's `ENV`, the compose file's env_file and `environment`, PATH, HOME and HOSTNAME.
 *
 * Every process of a node is stopped by pid: killing the namespace's init kills everything in it. The launcher
 * (`unshare`, in the root PID namespace) is registered in the harness's process group, so leftovers are
 * stopped too; it kills the init if it dies itself, and is killed when the test process dies.
 *
 * @module
 */

import { createMemoryCgroup, type MemoryCgroup } from "./cgroup.ts";
import type { Harness } from "./mod.ts";
import {
  isAlive,
  pathExists,
  run,
  type RunResult,
  type ServerProcess,
  StopWaiting,
  waitFor,
} from "./proc.ts";
import { autopilotRunFlags, REPO_ROOT, systemTool } from "./tools.ts";

/** The environment variable naming the ContainerPilot binary the suite runs. */
export const CONTAINERPILOT_BIN_VAR = "CONTAINERPILOT_BIN";

/** The ContainerPilot configuration every node runs: the shipped file, unmodified. */
export const SHIPPED_CONFIG = `${REPO_ROOT}/containerpilot.json5`;

/** The image's entrypoint script (the Dockerfile's ENTRYPOINT), which every node starts with. */
export const ENTRYPOINT = `${REPO_ROOT}/image/entrypoint.sh`;

/**
 * The ContainerPilot binary named by `CONTAINERPILOT_BIN`, or why the suite cannot run. A name that is set but
 * is not an executable file is an error, not a reason to skip: whoever set it wants the suite to run.
 */
export function containerPilotBin(): { bin: string } | { skip: string } {
  const bin = Deno.env.get(CONTAINERPILOT_BIN_VAR)?.trim();
  if (!bin) {
    return {
      skip: `${CONTAINERPILOT_BIN_VAR} is not set (no ContainerPilot can be installed on these machines; ` +
        `set it to a ContainerPilot binary to run them)`,
    };
  }
  let ok = false;
  try {
    const st = Deno.statSync(bin);
    ok = st.isFile && ((st.mode ?? 0) & 0o111) !== 0;
  } catch {
    // reported below
  }
  if (!ok || !bin.startsWith("/")) {
    throw new Error(`${CONTAINERPILOT_BIN_VAR}=${bin} is not an executable file given by its absolute path`);
  }
  return { bin };
}

// ---------------------------------------------------------------------------------------------------------
// /proc

/** One process, as the root PID namespace sees it. */
export interface ProcInfo {
  readonly pid: number;
  readonly ppid: number;
  /** The kernel's short name (`comm`), e.g. `mariadbd`, `containerpilot`, `deno`. */
  readonly comm: string;
}

/** Every process on the machine (those that vanish while it is read are left out). */
export function processTable(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const s = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const close = s.lastIndexOf(")");
      const rest = s.slice(close + 2).split(" ");
      if (rest[0] === "Z" || rest[0] === "X") continue;
      out.push({ pid: Number(e.name), ppid: Number(rest[1]), comm: s.slice(s.indexOf("(") + 1, close) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** `root` (if alive) and all its descendants, parents before children. */
export function processTree(root: number, table: ProcInfo[] = processTable()): ProcInfo[] {
  const children = new Map<number, ProcInfo[]>();
  for (const p of table) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
  const self = table.find((p) => p.pid === root);
  if (!self) return [];
  const out = [self];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i].pid) ?? []));
  return out;
}

function pidNamespace(pid: number): string | undefined {
  try {
    return Deno.readLinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/** Processes whose PID namespace is `ns` (as `readlink /proc/PID/ns/pid` prints it). */
function processesInNamespace(ns: string): ProcInfo[] {
  return processTable().filter((p) => pidNamespace(p.pid) === ns);
}

// ---------------------------------------------------------------------------------------------------------
// the host side: wrapper scripts, the shared snapshots dir

/**
 * The script the node runs as its init, before it becomes ContainerPilot (positional parameters, no secrets).
 * `set -e`: a failed mount stops the node at once, with the reason in its log.
 */
const INIT_SCRIPT = `set -eu
node=$1 snapshots=$2 bin=$3 cpbin=$4 cgversion=$5 cgroup=$6 name=$7 config=$8 entrypoint=$9 keep=\${10}
mount --bind "$node/run" /run
if [ -n "$cgversion" ]; then
  mkdir -p /run/.apt-cgroup
  if [ "$cgversion" = 1 ]; then
    mount -t cgroup -o memory apt-cgroup /run/.apt-cgroup
    mount -t tmpfs -o mode=0755,size=64k apt-cgroup /sys/fs/cgroup
    mkdir /sys/fs/cgroup/memory
    target=/sys/fs/cgroup/memory
  else
    mount -t cgroup2 apt-cgroup /run/.apt-cgroup
    target=/sys/fs/cgroup
  fi
  echo $$ >"/run/.apt-cgroup$cgroup/cgroup.procs"
  mount --bind "/run/.apt-cgroup$cgroup" "$target"
  mount -o remount,bind,ro "$target"
  umount /run/.apt-cgroup
  rmdir /run/.apt-cgroup
fi
mount -t overlay apt-varlib -o "lowerdir=/var/lib,upperdir=$node/varlib/upper,workdir=$node/varlib/work" /var/lib
mkdir -p /var/lib/mysql /var/lib/autopilot
mount --bind "$node/mysql" /var/lib/mysql
mount --bind "$node/autopilot" /var/lib/autopilot
mount --bind "$snapshots" /var/lib/autopilot/snapshots
mount --bind "$bin" /usr/local/bin
mount --bind "$cpbin" /usr/local/bin/containerpilot
# Host dirs below /tmp the node must still see (a checkout or deno's cache there): parked, then bound back
# at the same paths inside the node's /tmp.
i=0
for p in $keep; do i=$((i + 1)); mkdir -p "/run/.apt-keep/$i"; mount --bind "$p" "/run/.apt-keep/$i"; done
mount --bind "$node/tmp" /tmp
i=0
for p in $keep; do
  i=$((i + 1)); mkdir -p "$p"; mount --bind "/run/.apt-keep/$i" "$p"; umount "/run/.apt-keep/$i"
done
[ -z "$keep" ] || rm -rf /run/.apt-keep
hostname "$name"
# The image's entrypoint (it passes the cgroup memory limit on, then execs /usr/local/bin/containerpilot).
exec "$entrypoint" -config "$config"
`;

/** Options for {@linkcode ContainerHost.create}. */
export interface ContainerHostOptions {
  /** The ContainerPilot binary (absolute path). */
  containerpilot: string;
  /** ContainerPilot's configuration; default the shipped {@linkcode SHIPPED_CONFIG}. */
  config?: string;
}

/** Options for one node: its container's settings. */
export interface ContainerNodeOptions {
  /**
   * The container's own settings, as compose's env_file and `environment` give them (CONSUL, passwords,
   * SNAPSHOT_DIR...). PATH, HOME, HOSTNAME and the image's ENV are added.
   */
  env: Record<string, string>;
  /** Start the node in a fresh memory cgroup with this limit (bytes), removed when the node stops. */
  memoryLimitBytes?: number;
}

/** How a stop went. */
export interface StopResult {
  /** From the signal to the moment every process of the node had exited. */
  readonly ms: number;
  /** False when it did not exit within the grace period and was killed (SIGKILL), as Docker would. */
  readonly exitedByItself: boolean;
}

interface MysqlOsUser {
  uid: number;
  gid: number;
}

async function osUser(name: string): Promise<MysqlOsUser> {
  for (const line of (await Deno.readTextFile("/etc/passwd")).split("\n")) {
    const f = line.split(":");
    if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error(`OS user ${name} does not exist: install mariadb-server, which creates it`);
}

/**
 * Paths a node must see from the host; none may be below a path the node mounts over, except /tmp, whose
 * dirs the node binds back ({@link keptBelowTmp}).
 */
function checkVisible(what: string, path: string): void {
  for (const hidden of ["/run", "/var/run", "/var/lib/mysql", "/var/lib/autopilot", "/usr/local/bin"]) {
    if (path === hidden || path.startsWith(hidden + "/")) {
      throw new Error(`${what} ${path} is below ${hidden}, which a node mounts over: move it elsewhere`);
    }
  }
}

/**
 * The dirs below /tmp among `paths` (outermost only: a dir inside another is kept with it), which a node binds
 * back at the same place after it mounts its own /tmp. Pure.
 */
export function keptBelowTmp(paths: readonly string[]): string[] {
  const below = [...new Set(paths.filter((p) => p.startsWith("/tmp/")).map((p) => p.replace(/\/+$/, "")))];
  if (below.some((p) => /\s/.test(p))) throw new Error(`a path below /tmp has a space: ${below.join(", ")}`);
  return below.filter((p) => !below.some((q) => q !== p && p.startsWith(q + "/"))).sort();
}

function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/**
 * What the nodes of one harness share: the wrapper scripts, the ContainerPilot binary and configuration, the
 * snapshots dir. Disposing it kills every node still running (SIGKILL to each init) and removes their cgroups.
 */
export class ContainerHost implements AsyncDisposable {
  readonly #nodes = new Map<number, ContainerNode>();
  #disposed: Promise<void> | undefined;

  private constructor(
    readonly h: Harness,
    /** ContainerPilot's binary. */
    readonly containerpilot: string,
    /** ContainerPilot's configuration file. */
    readonly config: string,
    /** `/usr/local/bin` of every node. */
    readonly binDir: string,
    /** The snapshots dir every node sees at `/var/lib/autopilot/snapshots`. */
    readonly snapshotsDir: string,
    /** Host dirs below /tmp that every node binds back into its own /tmp. */
    readonly keep: readonly string[],
  ) {}

  /** Writes the wrapper scripts and makes the shared dirs in the harness's run dir. */
  static async create(h: Harness, opts: ContainerHostOptions): Promise<ContainerHost> {
    const config = opts.config ?? SHIPPED_CONFIG;
    const deno = Deno.execPath();
    const denoDir = Deno.env.get("DENO_DIR") ?? "";
    checkVisible("the repository", REPO_ROOT);
    checkVisible("deno", deno);
    checkVisible("the configuration", config);
    if (denoDir) checkVisible("DENO_DIR", denoDir);
    const base = `${h.dir}/containers`;
    const binDir = `${base}/bin`;
    const snapshotsDir = `${base}/snapshots`;
    await Deno.mkdir(binDir, { recursive: true });
    await Deno.mkdir(snapshotsDir, { recursive: true, mode: 0o700 });
    const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
    // The image runs `deno compile`'s binary, built with this very permission set. `-q` drops deno's own
    // notice that permission sets in deno.json are experimental, which the compiled binary never prints and
    // which would otherwise be a log line on every hook run.
    await Deno.writeTextFile(
      `${binDir}/autopilot`,
      [
        "#!/bin/sh",
        ...(denoDir ? [`DENO_DIR=${q(denoDir)}`, "export DENO_DIR"] : []),
        "DENO_NO_UPDATE_CHECK=1",
        "export DENO_NO_UPDATE_CHECK",
        `exec ${q(deno)} run -q ${autopilotRunFlags().map(q).join(" ")} --config ${
          q(`${REPO_ROOT}/deno.json`)
        } ${q(`${REPO_ROOT}/mod.ts`)} "$@"`,
        "",
      ].join("\n"),
      { mode: 0o755 },
    );
    // The mount point the binary is bound onto.
    await Deno.writeTextFile(`${binDir}/containerpilot`, "", { mode: 0o755 });
    const keep = keptBelowTmp([REPO_ROOT, dirname(deno), dirname(config), dirname(ENTRYPOINT), denoDir]);
    return new ContainerHost(h, opts.containerpilot, config, binDir, snapshotsDir, keep);
  }

  /** Node k (1-based, a node of the harness's network); made on first use, started by its `start()`. */
  node(k: number, opts?: ContainerNodeOptions): ContainerNode {
    const existing = this.#nodes.get(k);
    if (existing) {
      if (opts) throw new Error(`node ${k} already exists; pass new settings to its start()`);
      return existing;
    }
    if (!opts) throw new Error(`node ${k} does not exist yet: give its options`);
    const node = new ContainerNode(this, k, opts);
    this.#nodes.set(k, node);
    return node;
  }

  /** Every node made so far, by number. */
  get nodes(): ContainerNode[] {
    return [...this.#nodes.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  }

  /**
   * ContainerPilot's configuration as it renders it from `env` (`containerpilot -template`), before parsing.
   */
  async renderedConfig(env: Record<string, string>): Promise<string> {
    const out = await new Deno.Command(this.containerpilot, {
      args: ["-config", this.config, "-template"],
      clearEnv: true,
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    if (!out.success) throw new Error(`containerpilot -template failed: ${dec.decode(out.stderr).trim()}`);
    return dec.decode(out.stdout);
  }

  /** Kills every running node (SIGKILL to its init) and removes their cgroups. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      const results = await Promise.allSettled(this.nodes.map((n) => n.kill()));
      const errors = results.filter((r) => r.status === "rejected").map((r) => r.reason);
      if (errors.length > 0) throw new AggregateError(errors, "ContainerHost: dispose failed");
    })();
    return this.#disposed;
  }

  /** For `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/** One container: its dirs persist across starts (volumes), its processes do not. */
export class ContainerNode {
  /** 1-based node number. */
  readonly k: number;
  /** Its hostname, `n<k>` (autopilot's NODE_NAME defaults to it; ContainerPilot's service ids use it). */
  readonly name: string;
  /** Its network namespace. */
  readonly ns: string;
  /** Its eth0 address. */
  readonly address: string;
  /** Its dir on the host: `mysql/`, `autopilot/`, `run/`, `tmp/`, `varlib/`, the log. */
  readonly dir: string;
  /** ContainerPilot's stdout and stderr, every start appended. */
  readonly logFile: string;
  #env: Record<string, string>;
  #memoryLimit: number | undefined;
  #launcher: ServerProcess | undefined;
  #init: number | undefined;
  #pidNs: string | undefined;
  #cgroup: MemoryCgroup | undefined;
  #logOffset = 0;
  #starts = 0;

  constructor(readonly host: ContainerHost, k: number, opts: ContainerNodeOptions) {
    const net = host.h.net.node(k);
    this.k = k;
    this.name = `n${k}`;
    this.ns = net.ns;
    this.address = net.address;
    this.dir = `${host.h.dir}/containers/n${k}`;
    this.logFile = `${this.dir}/containerpilot.log`;
    this.#env = { ...opts.env };
    this.#memoryLimit = opts.memoryLimitBytes;
  }

  /** The container's settings (without PATH and the image's ENV). */
  get env(): Readonly<Record<string, string>> {
    return this.#env;
  }

  /** How many times it was started. */
  get starts(): number {
    return this.#starts;
  }

  /** True from `start()` until every process of the node has exited. */
  get running(): boolean {
    return this.#launcher !== undefined && !this.#launcher.exited;
  }

  /** The memory cgroup of the current start, if it has a limit. */
  get cgroup(): MemoryCgroup | undefined {
    return this.#cgroup;
  }

  /** The whole environment the node's init starts with. */
  containerEnv(): Record<string, string> {
    return {
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: "/root",
      HOSTNAME: this.name,
      // The image's ENV (the MariaDB flavour of the Dockerfile).
      MYSQL_FLAVOUR: "mariadb",
      CONTAINERPILOT: this.host.config,
      ...this.#env,
    };
  }

  /**
   * Starts the container on its dirs (made on the first start, kept afterwards): ContainerPilot as its init.
   * Resolves once ContainerPilot runs (not when the node is healthy).
   *
   * @param opts.env Settings to change from this start on (a container re-created with a new env_file).
   */
  async start(opts: { env?: Record<string, string> } = {}): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running`);
    if (this.#launcher?.exited) await this.#afterExit(); // it exited by itself: finish what stop() would do
    if (opts.env) this.#env = { ...this.#env, ...opts.env };
    const user = await osUser(this.#env.MYSQL_OS_USER ?? "mysql");
    const dirs: [string, number, MysqlOsUser | undefined][] = [
      [this.dir, 0o755, undefined],
      [`${this.dir}/mysql`, 0o755, user],
      [`${this.dir}/autopilot`, 0o700, undefined],
      [`${this.dir}/autopilot/snapshots`, 0o700, undefined],
      [`${this.dir}/run`, 0o755, undefined],
      [`${this.dir}/run/mysqld`, 0o755, user],
      [`${this.dir}/tmp`, 0o1777, undefined],
      [`${this.dir}/varlib/upper`, 0o755, undefined],
      [`${this.dir}/varlib/work`, 0o755, undefined],
    ];
    for (const [path, mode, owner] of dirs) {
      if (await pathExists(path)) continue;
      await Deno.mkdir(path, { recursive: true });
      await Deno.chmod(path, mode);
      if (owner) await Deno.chown(path, owner.uid, owner.gid);
    }
    this.#logOffset = await Deno.stat(this.logFile).then((s) => s.size).catch(() => 0);
    if (this.#memoryLimit !== undefined) {
      this.#cgroup = await createMemoryCgroup(this.host.h, this.name, this.#memoryLimit);
    }
    try {
      this.#launcher = await this.host.h.group.spawn({
        name: `containerpilot ${this.name}`,
        program: await systemTool("unshare", "util-linux"),
        args: [
          "--mount",
          "--uts",
          "--pid",
          "--fork",
          "--kill-child=SIGKILL",
          "--mount-proc",
          "--propagation",
          "private",
          "/bin/sh",
          "-c",
          INIT_SCRIPT,
          "sh",
          this.dir,
          this.host.snapshotsDir,
          this.host.binDir,
          this.host.containerpilot,
          this.#cgroup ? String(this.#cgroup.version) : "",
          this.#cgroup?.relative ?? "",
          this.name,
          this.host.config,
          ENTRYPOINT,
          this.host.keep.join(" "),
        ],
        logFile: this.logFile,
        netns: this.ns,
        env: this.containerEnv(),
        clearEnv: true,
        cwd: "/", // a container's working dir; \`cd\` in the script would export OLDPWD
      });
      this.#starts++;
      const launcher = this.#launcher;
      this.#init = await waitFor(`${this.name}'s init to start`, () => {
        if (launcher.exited) throw new StopWaiting(`${this.name} exited at once: ${this.logFile}`);
        return processTable().find((p) => p.ppid === launcher.pid)?.pid;
      }, { timeoutMs: 10_000, intervalMs: 10 });
      this.#pidNs = pidNamespace(this.#init);
      const init = this.#init;
      await waitFor(`${this.name}'s init to become ContainerPilot`, () => {
        if (launcher.exited) throw new StopWaiting(`${this.name} exited during startup`);
        return processTable().find((p) => p.pid === init)?.comm === "containerpilot";
      }, { timeoutMs: 10_000, intervalMs: 20 });
    } catch (e) {
      await this.kill().catch(() => {});
      // A first start whose spawn threw has no launcher for kill() to finish: its cgroup is removed here.
      const cg = this.#cgroup;
      this.#cgroup = undefined;
      await cg?.remove().catch(() => {});
      const log = await this.log().catch(() => "");
      throw new Error(`${this.name} did not start: ${e instanceof Error ? e.message : e}\n${log}`);
    }
  }

  /** The host pid of the namespace's init (ContainerPilot's supervisor), while running. */
  initPid(): number | undefined {
    return this.running ? this.#init : undefined;
  }

  /** Every process of the node, init first (host pids). */
  processes(): ProcInfo[] {
    const init = this.initPid();
    return init === undefined ? [] : processTree(init);
  }

  /** The host pid of the node's mysqld (a `mariadbd` or `mysqld` below the init), if one runs. */
  mysqldPid(): number | undefined {
    return this.processes().find((p) => p.comm === "mariadbd" || p.comm === "mysqld")?.pid;
  }

  /** Waits for a mysqld other than `not` (e.g. the one just killed) and returns its pid. */
  waitForMysqld(opts: { not?: number; timeoutMs?: number } = {}): Promise<number> {
    return waitFor(`${this.name}'s mysqld${opts.not ? ` (other than pid ${opts.not})` : ""}`, () => {
      if (!this.running) throw new StopWaiting(`${this.name} is not running`);
      const pid = this.mysqldPid();
      return pid !== undefined && pid !== opts.not ? pid : undefined;
    }, { timeoutMs: opts.timeoutMs ?? 60_000, intervalMs: 50 });
  }

  /**
   * Stops the container as Docker does: SIGTERM to its init (ContainerPilot, which passes it to its worker),
   * then, if it has not exited within `graceMs` (compose's stop_grace_period, 75 s), SIGKILL.
   */
  async stop(opts: { graceMs?: number } = {}): Promise<StopResult> {
    const launcher = this.#launcher;
    const init = this.initPid();
    if (!launcher || init === undefined) throw new Error(`${this.name} is not running`);
    const t0 = performance.now();
    Deno.kill(init, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exitedByItself = await Promise.race([
      launcher.status.then(() => true),
      new Promise<false>((r) => timer = setTimeout(() => r(false), opts.graceMs ?? 75_000)),
    ]);
    clearTimeout(timer);
    if (!exitedByItself) {
      signal(init, "SIGKILL");
      await launcher.status;
    }
    const ms = performance.now() - t0;
    await this.#afterExit();
    return { ms, exitedByItself };
  }

  /** Kills the whole container at once: SIGKILL to its init, which takes every process in it. */
  async kill(): Promise<void> {
    const launcher = this.#launcher;
    if (!launcher) return;
    if (!launcher.exited) {
      if (this.#init !== undefined) signal(this.#init, "SIGKILL");
      else signal(launcher.pid, "SIGKILL"); // still starting: unshare's --kill-child takes the init along
      await launcher.status;
    }
    await this.#afterExit();
  }

  /** SIGKILL to the node's mysqld only; returns the pid killed. ContainerPilot restarts it. */
  async killMysqld(): Promise<number> {
    const pid = this.mysqldPid();
    if (pid === undefined) throw new Error(`${this.name} has no mysqld running`);
    Deno.kill(pid, "SIGKILL");
    await waitFor(`${this.name}'s mysqld (pid ${pid}) to die`, () => !isAlive(pid), {
      timeoutMs: 10_000,
      intervalMs: 10,
    });
    return pid;
  }

  async #afterExit(): Promise<void> {
    // The namespace's init exits only after every other process in it; check nothing escaped.
    const ns = this.#pidNs;
    this.#pidNs = undefined;
    this.#init = undefined;
    if (ns !== undefined) {
      const left = processesInNamespace(ns);
      if (left.length > 0) {
        for (const p of left) signal(p.pid, "SIGKILL");
        throw new Error(`${this.name}: processes left after its init exited: ${JSON.stringify(left)}`);
      }
    }
    const cg = this.#cgroup;
    this.#cgroup = undefined;
    if (cg) await cg.remove();
  }

  /** ContainerPilot's output since the current (or last) start. */
  async log(): Promise<string> {
    const bytes = await Deno.readFile(this.logFile).catch(() => new Uint8Array());
    return new TextDecoder().decode(bytes.subarray(this.#logOffset));
  }

  /** Byte size of the log file now (a mark for {@linkcode logSince}). */
  async logMark(): Promise<number> {
    return await Deno.stat(this.logFile).then((s) => s.size).catch(() => 0);
  }

  /** The log lines written after `mark` (from {@linkcode logMark}), up to `end` if given. */
  async logSince(mark: number, end?: number): Promise<string[]> {
    const bytes = await Deno.readFile(this.logFile).catch(() => new Uint8Array());
    const text = new TextDecoder().decode(bytes.subarray(mark, end));
    return text.split("\n").filter((l) => l !== "");
  }

  /** Waits until the log since the current start matches `re`; returns the match. */
  waitForLog(re: RegExp, opts: { timeoutMs?: number; since?: number } = {}): Promise<RegExpMatchArray> {
    return waitFor(`${this.name}'s log to match ${re}`, async () => {
      const text = opts.since === undefined ? await this.log() : (await this.logSince(opts.since)).join("\n");
      return text.match(re) ?? undefined;
    }, { timeoutMs: opts.timeoutMs ?? 60_000, intervalMs: 200 });
  }

  /**
   * Runs a command inside the container (`docker exec`): its namespaces, its environment, cwd `/`.
   */
  async exec(argv: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
    const init = this.initPid();
    if (init === undefined) throw new Error(`${this.name} is not running`);
    const nsenter = await systemTool("nsenter", "util-linux");
    return await run(nsenter, ["-t", String(init), "-m", "-u", "-n", "-p", "--wd=/", "--", ...argv], {
      env: this.containerEnv(),
      clearEnv: true,
      timeoutMs: opts.timeoutMs ?? 60_000,
    });
  }
}

function signal(pid: number, sig: Deno.Signal): void {
  try {
    Deno.kill(pid, sig);
  } catch {
    // already gone
  }
}
