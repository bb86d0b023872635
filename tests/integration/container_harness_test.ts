/**
 * The container launcher (`harness/container.ts`) itself, without ContainerPilot: a node's init is a small
 * shell script standing in for the binary, which reports what it sees (namespaces, paths, owners, environment,
 * memory cgroup) and starts children. Checks what containerpilot_test.ts relies on: the image's paths, the
 * container's environment only, every process stopped by pid with nothing left behind, dirs kept across
 * restarts, and the memory cgroup made, seen and removed.
 *
 * @module
 */
import { assert, assertEquals } from "../unit/assert.ts";
import {
  cleanupLeftovers,
  createMemoryCgroup,
  Harness,
  pathExists,
  randomId,
  recordedCgroups,
  stateDir,
  withStateLock,
} from "./harness/mod.ts";
import { ContainerHost, processTable } from "./harness/container.ts";

/** The init: reports, starts a child and a grandchild, and exits 0 on SIGTERM. */
const FAKE_INIT = `#!/bin/sh
echo "args $*"
echo "host $(hostname)"
echo "eth0 $(ip -4 -o addr show dev eth0 | awk '{print $4}')"
echo "env $(env | cut -d= -f1 | grep -v -x -e PWD -e SHLVL -e _ | sort | tr '\\n' ' ')"
for p in /var/lib/mysql /run/mysqld /var/lib/autopilot /var/lib/autopilot/snapshots /tmp; do
  echo "path $p $(stat -c %U:%a "$p")"
done
echo "memory $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null)"
echo "mounts $(grep -c . /proc/self/mountinfo)"
sleep 1000 &
sh -c 'sleep 1000' &
trap 'echo "got TERM"; exit 0' TERM
echo ready
while :; do sleep 1 & wait $!; done
`;

Deno.test("container launcher: a node gets the image's paths, its own namespaces and env, and leaves nothing behind", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const fake = `${h.dir}/containerpilot`;
  await Deno.writeTextFile(fake, FAKE_INIT, { mode: 0o755 });
  await using host = await ContainerHost.create(h, { containerpilot: fake });
  const n1 = host.node(1, { env: { CONSUL: "10.0.0.1:8500", MYSQL_REPL_PASSWORD: "not-a-secret" } });
  await n1.start();
  const log = (await n1.waitForLog(/^ready$/m, { timeoutMs: 10_000 })).input!;
  const line = (key: string) => log.match(new RegExp(`^${key} (.*)$`, "m"))?.[1];
  assertEquals(line("args"), `-config ${host.config}`);
  assertEquals(line("host"), "n1");
  assertEquals(line("eth0"), `${n1.address}/24`);
  assertEquals(
    line("env")?.trim().split(" "),
    [
      "CONSUL",
      "CONSUL_HTTP_SSL_VERIFY",
      "CONTAINERPILOT",
      "HOME",
      "HOSTNAME",
      "MYSQL_FLAVOUR",
      "MYSQL_REPL_PASSWORD",
      "PATH",
    ],
  );
  for (
    const [path, owner] of [
      ["/var/lib/mysql", "mysql:755"],
      ["/run/mysqld", "mysql:755"],
      ["/var/lib/autopilot", "root:700"],
      ["/var/lib/autopilot/snapshots", "root:700"],
      ["/tmp", "root:1777"],
    ]
  ) {
    assertEquals(line(`path ${path}`), owner, path);
  }
  assertEquals(line("memory"), "", "a node without a memory limit sees no cgroup");

  // The processes: init, a child, a grandchild, all below the init; no mysqld.
  const procs = n1.processes();
  assertEquals(procs[0].comm, "containerpilot");
  assert(procs.filter((p) => p.comm === "sleep").length >= 2, JSON.stringify(procs));
  assertEquals(n1.mysqldPid(), undefined);

  // `docker exec`: the node's mounts and hostname; its files are the node dir's, not the host's.
  const exec = await n1.exec([
    "sh",
    "-c",
    "hostname; echo hello >/var/lib/autopilot/marker; echo s >/var/lib/autopilot/snapshots/s1",
  ]);
  assertEquals(exec.stdout.trim(), "n1", exec.stderr);
  assertEquals(await Deno.readTextFile(`${n1.dir}/autopilot/marker`), "hello\n");
  assertEquals(await Deno.readTextFile(`${host.snapshotsDir}/s1`), "s\n");
  assert(!(await pathExists("/var/lib/autopilot/marker")), "the node wrote to the host's /var/lib/autopilot");
  const wrapper = await n1.exec(["autopilot", "version"]);
  assert(/^autopilot \S+$/m.test(wrapper.stdout), `autopilot on PATH: ${wrapper.stdout} ${wrapper.stderr}`);
  assertEquals(wrapper.stderr, "", "the autopilot wrapper prints nothing but the program's own output");

  // SIGTERM: the init exits, the namespace's other processes go with it.
  const pids = n1.processes().map((p) => p.pid);
  const stop = await n1.stop({ graceMs: 10_000 });
  assert(stop.exitedByItself);
  assert((await n1.log()).includes("got TERM"));
  const alive = new Set(processTable().map((p) => p.pid));
  assertEquals(pids.filter((p) => alive.has(p)), [], "processes of the node outlived its stop");
  assert(!n1.running);

  // A restart keeps the dirs; SIGKILL of the init ends everything at once.
  await n1.start();
  await n1.waitForLog(/^ready$/m, { timeoutMs: 10_000 });
  assertEquals(n1.starts, 2);
  assertEquals((await n1.exec(["cat", "/var/lib/autopilot/marker"])).stdout, "hello\n");
  const pids2 = n1.processes().map((p) => p.pid);
  await n1.kill();
  const alive2 = new Set(processTable().map((p) => p.pid));
  assertEquals(pids2.filter((p) => alive2.has(p)), [], "processes of the node outlived its kill");

  // A memory limit: its own cgroup, seen by the node as a container sees it, removed when the node stops.
  const n2 = host.node(2, { env: { MYSQL_REPL_PASSWORD: "not-a-secret" }, memoryLimitBytes: 256 * 2 ** 20 });
  await n2.start();
  const log2 = (await n2.waitForLog(/^ready$/m, { timeoutMs: 10_000 })).input!;
  assertEquals(log2.match(/^memory (.*)$/m)?.[1], String(256 * 2 ** 20));
  const cg = n2.cgroup!;
  const procsFile = `${cg.path}/cgroup.procs`;
  const inCgroup = (await Deno.readTextFile(procsFile)).split("\n").filter((l) => l).map(Number);
  assert(inCgroup.includes(n2.initPid()!), `the init is not in ${cg.path}`);
  assert((await Deno.readTextFile(`${h.dir}/cgroups`)).includes(cg.path), "the cgroup was not recorded");
  await n2.kill();
  assert(!(await pathExists(cg.path)), `${cg.path} was not removed`);
});

Deno.test("container launcher: a first start that cannot spawn removes the memory cgroup it made", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const fake = `${h.dir}/containerpilot`;
  await Deno.writeTextFile(fake, FAKE_INIT, { mode: 0o755 });
  await using host = await ContainerHost.create(h, { containerpilot: fake });
  // A NUL byte in a setting: the spawn itself throws, before there is any process.
  const n1 = host.node(1, { env: { BROKEN: "a\0b" }, memoryLimitBytes: 64 * 2 ** 20 });
  let error = "";
  await n1.start().catch((e) => error = String(e));
  assert(/n1 did not start: .*nul byte/.test(error), `start: ${error}`);
  const made = await recordedCgroups(h.tag, h.dir);
  assertEquals(made.length, 1, `cgroups listed: ${made}`);
  assert(made[0].endsWith(`/apt${h.tag}_n1`), made[0]);
  assert(!(await pathExists(made[0])), `${made[0]} was left after the failed start`);
  assertEquals(n1.cgroup, undefined);
  assert(!n1.running);
});

Deno.test("cleanupLeftovers() behaviour: removes the memory cgroups a dead run recorded", async () => {
  const tag = randomId(4);
  const runDir = `${stateDir()}/runs/${tag}`;
  await Deno.mkdir(runDir, { recursive: true });
  const cg = await createMemoryCgroup({ tag, dir: runDir }, "n1", 64 * 2 ** 20);
  try {
    assertEquals(await recordedCgroups(tag, runDir), [cg.path], "createMemoryCgroup() did not record it");
    await withStateLock(async () => {
      await Deno.writeTextFile(`${stateDir()}/tags`, `${tag}\t1:0\n`, { append: true }); // an ended owner
    });
    const report = await cleanupLeftovers();
    assert(report.cgroups.includes(cg.path), `cgroups removed: ${report.cgroups}`);
    assert(!(await pathExists(cg.path)));
  } finally {
    await Deno.remove(cg.path).catch(() => {});
    await Deno.remove(runDir, { recursive: true }).catch(() => {});
  }
});
