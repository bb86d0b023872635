/**
 * Failover figures on the namespace test cluster (real Consul, real MariaDB), the table of issue 12.
 *
 * Each event runs on a 3-node cluster of its own, reused across its trials while it gets whole again after
 * each (a writable lock holder and two replicas of it within 120 s; else a fresh cluster, and the output says
 * so). Around it, as ContainerPilot would run them on every node: `autopilot health` every 5 s (per node, from
 * the start of its previous pass), and the watch on `mysql-primary` every second running `autopilot on-change`
 * on every node whose ContainerPilot is alive and reaches Consul (bench/failover_rig.ts). A killed mysqld is
 * started again at once without pre-start, as ContainerPilot's `mysql` job (`restarts: unlimited`) does (so
 * the old primary may well keep its role), or with `--kill-restart=after-failover` only once another node
 * took writes (a real failover, then the rejoin).
 * Consul is one server keeping its data on disk (so that it can stop and come back with it).
 *
 * Independently of Consul, a writer appends keys (one every ~75 ms, 1 s statement bound) to the node the
 * sampler last saw as the only writable one, and a sampler reads every node's read_only every 100 ms over its
 * own socket connection (no answer: unknown, never writable).
 *
 * Per trial: the write gap (the longest run without an acknowledged write from the disruption on: from it to
 * the first write acknowledged after it, unless a write in flight at the disruption was acknowledged just
 * after it; for switchover and the Consul outages, the writes refused), samples with two writable nodes, and
 * the acknowledged keys missing from the final primary; plus the event's own figure.
 *
 * Run: `deno task bench:failover [--events=kill9,cut,...] [--trials=N] [--kill-restart=after-failover]`
 * (default every event, 10 trials, a killed mysqld started again at once).
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { loadConfig } from "../src/config.ts";
import { leaseMsFor } from "../src/mysql/lease.ts";
import { Cluster, type TestNode } from "../tests/integration/cluster.ts";
import { delay, freeze, Harness, kill9 } from "../tests/integration/harness/mod.ts";
import {
  type Ack,
  gapText,
  longestRefusal,
  lost,
  markdownTable,
  outcomes,
  refusalsOver,
  secs,
  summarize,
  type TrialFigures,
  twoWritable,
  writeGap,
  writeOutage,
} from "./failover_figures.ts";
import {
  ask,
  benchWriter,
  HEALTH_INTERVAL_MS,
  healthChecks,
  lockHolder,
  NodeLife,
  primaryWatch,
  readOnlySampler,
  replicates,
  WATCH_INTERVAL_MS,
  whole,
  within,
} from "./failover_rig.ts";

/**
 * When a killed mysqld starts again (--kill-restart): `at-once`, as ContainerPilot's `mysql` job
 * (`restarts: unlimited`) does, or `after-failover`, once another node acknowledged a write (a real failover,
 * then the old primary's rejoin). Read when the events run, after the arguments are parsed.
 */
let KILL_RESTART = "at-once";

/** How long a cluster may take to get whole again after a trial before a fresh one replaces it. */
const WHOLE_BOUND_MS = 120_000;
/** How long the bench waits for an old primary to be a replica again. */
const REJOIN_BOUND_MS = 120_000;

/** One cluster and what runs around it. */
interface Rig {
  readonly h: Harness;
  readonly c: Cluster;
  readonly nodes: TestNode[];
  readonly life: NodeLife;
  readonly sampler: ReturnType<typeof readOnlySampler>;
  stop(): Promise<void>;
}

async function makeRig(env: Record<string, string>): Promise<Rig> {
  const h = await Harness.create({ nodes: 3 });
  try {
    const c = await Cluster.create(h, { persistentConsul: true });
    const nodes = [1, 2, 3].map((k) => c.node(k, { FAILOVER_QUIET_PERIOD: "0", LOG_LEVEL: "INFO", ...env }));
    for (const n of nodes) {
      const r = await c.boot(n);
      if (r.code !== 0) throw new Error(`${n.name} did not start: ${r.stderr.split("\n").at(-1)}`);
    }
    await using app = await c.app(nodes[0]);
    await app.query("CREATE TABLE app.bench (id BIGINT PRIMARY KEY)");
    const life = new NodeLife();
    const checks = healthChecks(c, nodes, life);
    const watch = primaryWatch(c, nodes, life, () => h.consul.url);
    const sampler = readOnlySampler(nodes);
    return {
      h,
      c,
      nodes,
      life,
      sampler,
      stop: async () => {
        // A hook that hangs must not hang the bench: its servers go with the harness, and it with them.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const bound = new Promise<void>((r) => timer = setTimeout(r, 150_000));
        await Promise.race([Promise.all([checks.stop(), watch.stop(), sampler.stop()]), bound]);
        clearTimeout(timer);
        await h.dispose();
      },
    };
  } catch (e) {
    await h.dispose().catch(() => {});
    throw e;
  }
}

/** What an event's run sees. */
interface TrialCtx {
  readonly rig: Rig;
  /** The primary when the trial started. */
  readonly old: TestNode;
  readonly acks: readonly Ack[];
  /** When the disruption happened (set by `mark()`). */
  t0: number;
  mark(): void;
  /** Waits (bounded) for a write acknowledged after t0, optionally by another node than `old`. */
  resumed(boundMs: number, elsewhere?: boolean): Promise<boolean>;
}

interface EventDef {
  readonly title: string;
  readonly env?: Record<string, string>;
  /** The bound on the gap (a trial that never resumed within it says so). */
  readonly boundMs: number;
  /** Disrupts (calling mark() at the moment of the disruption), waits, restores; returns the event's figure. */
  run(x: TrialCtx): Promise<Figure>;
}

/** An event's own figure in one trial: in words, as an outcome to count over trials, and its time if any. */
interface Figure {
  readonly text: string;
  readonly outcome: string;
  readonly ms?: number;
}

const ms = (since: number) => performance.now() - since;

/** The last line of a health pass on `node`, to say why something did not happen. */
async function lastWord(x: TrialCtx, node: TestNode): Promise<string> {
  // At DEBUG: a pass that only reports (e.g. "refusing to bootstrap") says why at that level alone.
  const r = await x.rig.c.run(node, ["health"], { LOG_LEVEL: "DEBUG" });
  // Not the metrics line: there is no ContainerPilot socket here.
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "" && !l.includes("Metrics not sent"));
  const line = lines.findLast((l) => /refus|reason|because/i.test(l)) ??
    lines.findLast((l) => /\b(ERROR|ERR|WARN|WRN|WARNING)\b/.test(l)) ??
    lines.findLast((l) => /cannot|not /i.test(l)) ?? lines.at(-1) ?? "";
  return `exit ${r.code}: ${line.replace(/^.*?\[[A-Z]+\]\s*/, "").slice(0, 160)}`;
}

/** Whether and when (from `since`) the old primary is a replica of the current primary again. */
async function rejoin(x: TrialCtx, since: number, label: string, boundMs = REJOIN_BOUND_MS): Promise<Figure> {
  const { c, nodes } = x.rig;
  const at = await within(Math.max(0, boundMs - ms(since)), async () => {
    const p = await lockHolder(c, nodes);
    if (p === undefined) return undefined;
    if (p === x.old) {
      // Kept only once settled: the old primary writable and the others its replicas (else keep looking).
      const w = await whole(c, nodes);
      return "primary" in w && w.primary === x.old ? "kept" : undefined;
    }
    return (await replicates(x.old, p)) ? ms(since) : undefined;
  }, 500);
  const now = await lockHolder(c, nodes);
  if (at === "kept") return { text: `no failover: ${x.old.name} kept the role`, outcome: "no failover" };
  if (at === undefined) {
    const outcome = `old primary not a replica within ${secs(boundMs)} of ${label}`;
    const why = await lastWord(x, x.old);
    return { text: `${outcome} (primary ${now?.name ?? "none"}; ${x.old.name}: ${why})`, outcome };
  }
  const outcome = `old primary a replica again after ${label}`;
  return { text: `new primary ${now?.name}; ${outcome} in ${secs(at)}`, outcome, ms: at };
}

/** ContainerPilot's restart of a killed mysqld (the same my.cnf, no pre-start), in the background. */
function restartMysqld(x: TrialCtx, node: TestNode): Promise<boolean> {
  return x.rig.c.startMysqld(node).then(() => true, () => false);
}

/** pre-start as ContainerPilot runs it until it succeeds (here: --once every 5 s, bounded), then mysqld. */
async function startNode(x: TrialCtx, node: TestNode, boundMs: number): Promise<string> {
  const { c, life } = x.rig;
  const t = performance.now();
  let refusals = 0;
  let last = "";
  while (ms(t) < boundMs) {
    const r = await c.preStart(node);
    if (r.code === 0) {
      await c.startMysqld(node);
      life.back(node.k);
      return refusals === 0
        ? `${node.name} pre-start ok`
        : `${node.name} pre-start ok after ${refusals} refusals`;
    }
    refusals++;
    last = (r.stderr.split("\n").filter((l) => l.trim() !== "").at(-1) ?? "").replace(/^\S+\s+\S+\s+/, "");
    await delay(5000);
  }
  return `${node.name}: pre-start refused ${refusals} times in ${secs(boundMs)} (${last.slice(0, 120)})`;
}

function kill9Event(title: string, env: Record<string, string> = {}): EventDef {
  return {
    title,
    env,
    boundMs: 120_000,
    async run(x) {
      x.mark();
      await kill9(x.old.mysqld!.pid);
      let restarted: Promise<boolean>;
      if (KILL_RESTART === "at-once") {
        restarted = restartMysqld(x, x.old);
        await x.resumed(120_000);
      } else {
        await x.resumed(120_000, true);
        restarted = restartMysqld(x, x.old);
      }
      if (await restarted) return await rejoin(x, x.t0, "the kill");
      const outcome = "mysqld did not start again";
      return { text: `${x.old.name}'s ${outcome}`, outcome };
    },
  };
}

/** Consul unreachable for `outMs` under writes (stopped, or frozen), then back; `restore` brings it back. */
function consulEvent(
  title: string,
  outMs: number,
  stopIt: (r: Rig) => Promise<void>,
  restore: (r: Rig) => Promise<void>,
): EventDef {
  return {
    title,
    boundMs: outMs + 60_000,
    async run(x) {
      x.mark();
      await stopIt(x.rig);
      try {
        await delay(outMs);
      } finally {
        await restore(x.rig);
      }
      await delay(15_000);
      const { c, nodes, sampler } = x.rig;
      const over2 = refusalsOver(x.acks, x.t0, performance.now(), 2000);
      const moved =
        sampler.samples.filter((s) =>
          s.t >= x.t0 && nodes.some((n, i) => n !== x.old && s.writable[i] === true)
        ).length;
      const holder = await lockHolder(c, nodes);
      const failover = holder === x.old && moved === 0 ? "no failover" : "role moved";
      const outcome = `${failover}, ${over2 === 0 ? "no" : over2} refused runs over 2 s`;
      const detail = failover === "no failover"
        ? ""
        : ` (lock: ${holder?.name ?? "none"}, ${moved} samples with another node writable)`;
      return { text: `${outcome}${detail}`, outcome };
    },
  };
}

const EVENTS: Record<string, EventDef> = {
  kill9: kill9Event("kill -9 of the primary's mysqld (async)"),
  node: {
    title: "whole primary node killed",
    boundMs: 120_000,
    async run(x) {
      x.mark();
      x.rig.life.gone(x.old.k);
      await kill9(x.old.mysqld!.pid);
      await x.resumed(120_000, true);
      const p = await lockHolder(x.rig.c, x.rig.nodes);
      // The node comes back as a new container would (pre-start, mysqld, checks), for the next trial.
      const back = performance.now();
      const started = await startNode(x, x.old, 60_000);
      const again = await rejoin(x, back, "its start");
      return { ...again, text: `new primary ${p?.name ?? "none"}; ${started}; then ${again.text}` };
    },
  },
  cut: {
    title: "primary's link cut",
    boundMs: 120_000,
    async run(x) {
      const { h, life } = x.rig;
      x.mark();
      await h.net.cut(x.old.k);
      life.cut(x.old.k, true);
      try {
        await x.resumed(120_000, true);
        await delay(3000);
      } finally {
        await h.net.heal(x.old.k);
        life.cut(x.old.k, false);
      }
      const again = await rejoin(x, performance.now(), "the heal");
      return { ...again, text: `healed after the failover: ${again.text}` };
    },
  },
  switchover: {
    title: "planned switchover, writes refused",
    boundMs: 60_000,
    async run(x) {
      x.mark();
      const r = await x.rig.c.run(x.old, ["switchover"]);
      await x.resumed(60_000, true);
      const p = await lockHolder(x.rig.c, x.rig.nodes);
      const why = r.code === 0 ? "" : ` (${r.stderr.split("\n").at(-1)?.slice(0, 120)})`;
      const outcome = `switchover exit ${r.code}`;
      return { text: `${outcome}${why}; primary ${p?.name ?? "none"}`, outcome };
    },
  },
  "consul-down": consulEvent(
    "Consul down 60 s under writes",
    60_000,
    (r) => r.h.stopConsul(),
    async (r) => void await r.h.restartConsul(),
  ),
  "consul-freeze": consulEvent(
    "Consul frozen (SIGSTOP) 30 s under writes",
    30_000,
    (r) => Promise.resolve(freeze(r.h.consul.pid, true)),
    (r) => Promise.resolve(freeze(r.h.consul.pid, false)),
  ),
  "empty-consul": {
    title: "all nodes restarted on an empty Consul",
    boundMs: 180_000,
    async run(x) {
      const { h, c, nodes, life } = x.rig;
      for (const n of nodes) life.gone(n.k);
      await Promise.all(nodes.map((n) => c.stopMysqld(n)));
      await h.restartConsul({ empty: true });
      x.mark();
      const started = await Promise.all(nodes.map((n) => startNode(x, n, 180_000)));
      for (const n of nodes) life.back(n.k);
      const ok = await x.resumed(Math.max(0, 180_000 - ms(x.t0)));
      const p = await lockHolder(c, nodes);
      const why = p === undefined ? ` (${nodes[0].name}'s health: ${await lastWord(x, nodes[0])})` : "";
      const outcome = ok ? "a writable primary" : `no writable primary within ${secs(180_000)}`;
      return {
        text: `${started.join(", ")}; primary ${p?.name ?? "none"}${why}`,
        outcome,
        ms: ok ? writeGap(x.acks, x.t0) : undefined,
      };
    },
  },
  "semisync-kill9": kill9Event("semi-sync kill -9 of the primary's mysqld", { SEMI_SYNC: "on" }),
  "cut-heal": {
    title: "link cut under writes, healed after 20 s",
    boundMs: 120_000,
    async run(x) {
      const { h, c, life } = x.rig;
      const before = new Set(await storeEntries(c));
      x.mark();
      await h.net.cut(x.old.k);
      life.cut(x.old.k, true);
      let healed = performance.now();
      try {
        await delay(20_000);
      } finally {
        await h.net.heal(x.old.k);
        life.cut(x.old.k, false);
        healed = performance.now();
      }
      await x.resumed(Math.max(0, 120_000 - ms(x.t0)));
      const again = await rejoin(x, healed, "the heal");
      const added = (await storeEntries(c)).filter((e) => !before.has(e) && !/\.xbstream(\.zst)?$/.test(e));
      const saved = added.length === 0 ? "nothing else saved to the store" : `saved to the store`;
      const names = added.length === 0 ? "" : ` (${added.join(", ")})`;
      return { text: `${again.text}; ${saved}${names}`, outcome: `${again.outcome}, ${saved}`, ms: again.ms };
    },
  },
};

/** The snapshot store's entries (the directory store: names relative to its root). */
async function storeEntries(c: Cluster): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory) await walk(`${dir}/${e.name}`, `${rel}${e.name}/`);
      else out.push(`${rel}${e.name}`);
    }
  };
  await walk(c.snapshots, "").catch(() => {});
  return out;
}

/** Runs one trial on `rig`; returns its figures and whether the cluster got whole again. */
async function trial(
  rig: Rig,
  ev: EventDef,
  seq: number,
): Promise<{ f: TrialFigures; whole: string | true }> {
  const { c, nodes, sampler } = rig;
  const ready = await within(60_000, async () => {
    const r = await whole(c, nodes);
    return "primary" in r ? r : undefined;
  }, 1000);
  if (ready === undefined) {
    const r = await whole(c, nodes);
    throw new Error(
      `the cluster is not whole within 60 s: ${"missing" in r ? r.missing : "whole only just now"}`,
    );
  }
  const start = ready;
  const firstId = seq * 1_000_000;
  const w = benchWriter(sampler.writableNode, firstId);
  const from = performance.now();
  let fig: Figure = { text: "", outcome: "" };
  const x: TrialCtx = {
    rig,
    old: start.primary,
    acks: w.acks,
    t0: Infinity,
    mark() {
      this.t0 = performance.now();
    },
    async resumed(boundMs, elsewhere = false) {
      const found = await within(
        boundMs,
        () =>
          Promise.resolve(
            w.acks.some((a) => a.t > x.t0 && (!elsewhere || a.node !== x.old.name)) || undefined,
          ),
        50,
      );
      return found === true;
    },
  };
  try {
    await delay(2000);
    fig = await ev.run(x);
  } catch (e) {
    fig = { text: `trial failed: ${(e as Error).message.split("\n")[0]}`, outcome: "trial failed" };
  }
  await delay(2000);
  const end = performance.now();
  await w.stop();
  const acks = w.acks;
  const t0 = Number.isFinite(x.t0) ? x.t0 : from;
  const outage = writeOutage(acks, t0, end);
  const gapMs = outage === undefined || outage > ev.boundMs ? undefined : outage;
  const two = twoWritable(sampler.samples, from, end).length;
  // Read back once the cluster is whole again (bounded), from its primary.
  // A trial whose writes never resumed has waited long enough already.
  const wholeBound = gapMs === undefined ? 30_000 : WHOLE_BOUND_MS;
  const got = await within(wholeBound, async () => {
    const r = await whole(c, nodes);
    return "primary" in r ? r : undefined;
  }, 1000);
  let lostKeys: number | undefined;
  let wholeState: string | true = true;
  const readFrom = got?.primary ?? sampler.writableNode();
  if (got === undefined) {
    const r = await whole(c, nodes);
    wholeState = `${secs(wholeBound)} (${"missing" in r ? r.missing : "whole only just now"})`;
  }
  if (readFrom !== undefined) {
    const rows = await ask(
      readFrom,
      `SELECT id FROM app.bench WHERE id >= ${firstId} AND id < ${firstId + 1_000_000}`,
    );
    if (rows !== undefined) lostKeys = lost(acks, rows.map((r) => Number(r.id))).length;
  }
  return {
    f: {
      gapMs,
      longestRefusedMs: longestRefusal(acks, t0, end),
      twoWritable: two,
      acked: acks.length,
      lost: lostKeys,
      extra: fig.text,
      outcome: fig.outcome,
      outcomeMs: fig.ms,
    },
    whole: wholeState,
  };
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    trials: { type: "string", default: "10" },
    events: { type: "string", default: Object.keys(EVENTS).join(",") },
    "kill-restart": { type: "string", default: "at-once" },
  },
});
if (!["at-once", "after-failover"].includes(values["kill-restart"])) {
  console.error(`--kill-restart=${values["kill-restart"]}: say at-once or after-failover`);
  Deno.exit(2);
}
KILL_RESTART = values["kill-restart"];
const trials = Math.max(1, Math.floor(Number(values.trials)) || 1);
const chosen = values.events.split(",").map((e) => e.trim()).filter((e) => e !== "");
const unknown = chosen.filter((e) => !(e in EVENTS));
if (unknown.length > 0) {
  console.error(`unknown event(s) ${unknown.join(", ")}: choose among ${Object.keys(EVENTS).join(", ")}`);
  Deno.exit(2);
}

const config = loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "x" } as Record<string, string>)[n], {
  hostname: () => "h",
});
const ttl = config.session.ttlSeconds;
console.log(
  "autopilot-mysql failover figures (MariaDB, 3-node namespace cluster, one Consul server with its data)",
);
console.log(
  `The raw figures depend on: health pass every ${HEALTH_INTERVAL_MS / 1000} s per node; watch every ` +
    `${WATCH_INTERVAL_MS / 1000} s running on-change on every live node; SESSION_TTL ${ttl} s (default); ` +
    `in-server lease ${
      leaseMsFor(ttl) / 1000
    } s; FAILOVER_QUIET_PERIOD 0 (clusters are reused across trials); ` +
    `a killed mysqld restarted ${
      KILL_RESTART === "at-once" ? "at once (ContainerPilot's restarts)" : "once another node took writes"
    } (--kill-restart); writer every ~75 ms, 1 s statement bound; ` +
    `read_only sampled every 100 ms. ${trials} trial(s) per event. Host: ${navigator.hardwareConcurrency} CPUs.\n`,
);

const rows: { event: string; summary: ReturnType<typeof summarize>; boundMs: number; extra: string }[] = [];
for (const name of chosen) {
  const ev = EVENTS[name];
  const figures: TrialFigures[] = [];
  let rig: Rig | undefined;
  let seq = 1;
  for (let i = 1; i <= trials; i++) {
    let how = "cluster reused";
    try {
      if (rig === undefined) {
        how = "fresh cluster";
        rig = await makeRig(ev.env ?? {});
      }
      const { f, whole: w } = await trial(rig, ev, seq++);
      figures.push(f);
      console.log(
        `  ${name} #${i} (${how}): gap ${secs(f.gapMs)}, longest refused ${secs(f.longestRefusedMs)}, ` +
          `two writable ${f.twoWritable}, acked ${f.acked}, lost ${f.lost ?? "unread"}; ${f.extra}` +
          (w === true ? "" : `; not whole within ${w}: next trial on a fresh cluster`),
      );
      if (w !== true) {
        await rig.stop().catch(() => {});
        rig = undefined;
      }
    } catch (e) {
      console.log(`  ${name} #${i} (${how}): no figure: ${(e as Error).message.split("\n")[0]}`);
      await rig?.stop().catch(() => {});
      rig = undefined;
    }
  }
  await rig?.stop().catch(() => {});
  const summary = summarize(figures);
  const extra = outcomes(figures);
  rows.push({ event: ev.title, summary, boundMs: ev.boundMs, extra: extra.replaceAll("|", "/") });
  const lostText = `${summary.lost} of ${summary.acked}${
    summary.unread ? ` (${summary.unread} unread)` : ""
  }`;
  console.log(
    `${name}: write gap p50 / p95 / worst ` +
      `${gapText(summary, ev.boundMs)}, trials ${summary.trials}, two writable ${summary.twoWritable}, ` +
      `acked lost ${lostText}; ${extra}\n`,
  );
}

console.log(markdownTable(rows));
