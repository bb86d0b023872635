/**
 * `autopilot backup now | list [--json] | verify [NAME]`: the operator's view of the snapshots.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../config.ts";
import { CORRUPT_ADVICE, CorruptSnapshotError } from "../backup/errors.ts";
import { clusterPrefix, type Manifest, ofCluster } from "../backup/manifest.ts";
import { inventorySnapshots, type StoredSnapshot } from "../backup/retention.ts";
import { ArchiveReplayError, describeSource, findSnapshot, verifySnapshot } from "../backup/verify.ts";
import { lookupArchiveHead, lookupPublished, operatorError } from "../operator.ts";
import { openStore, StoreUnavailableError } from "../storage/open.ts";
import { openKeyring } from "../backup/encryption.ts";
import type { SnapshotStore } from "../storage/store.ts";
import { runSnapshot } from "../snapshot_task.ts";
import { type CommandContext, EXIT } from "../command.ts";
import { print, printError } from "../output.ts";
import { errorMessage, formatBytes } from "../text.ts";
import { listSegments } from "../binlog/catalog.ts";
import { isoSecond, recoverableWindows, type RecoveryWindow, snapshotPoint } from "../binlog/plan.ts";
import type { Segment } from "../binlog/segment.ts";

const log = getLogger(["autopilot", "backup"]);

/** `autopilot backup now | list [--json] | verify [NAME]`. */
export async function runBackup(ctx: CommandContext): Promise<number> {
  const [sub, ...args] = ctx.positionals;
  const usage = (problem: string): number => {
    printError(`autopilot backup: ${problem}: run 'autopilot help backup'`);
    return EXIT.usage;
  };
  if (sub === undefined) return usage("name a subcommand: now, list or verify");
  if (!["now", "list", "verify"].includes(sub)) {
    return usage(`unknown subcommand '${sub}' (expected now, list or verify)`);
  }
  if (ctx.flags.json && sub !== "list") return usage("--json applies to 'backup list' only");
  const maxArgs = sub === "verify" ? 1 : 0;
  if (args.length > maxArgs) return usage(`too many arguments for 'backup ${sub}': ${args.join(" ")}`);
  switch (sub) {
    case "now":
      return await runSnapshot(ctx.config, { force: true });
    case "list":
      return await list(ctx.config, ctx.flags.json === true);
    default:
      return await verify(ctx.config, args[0]);
  }
}

async function list(config: Config, json: boolean): Promise<number> {
  const published = await lookupPublished(config);
  let store: SnapshotStore;
  let found: StoredSnapshot[];
  try {
    store = await openStore(config);
    try {
      found = await inventorySnapshots(store);
    } catch (e) {
      throw new StoreUnavailableError(
        `Cannot list the ${store.kind} store at ${store.location}: ${errorMessage(e)}`,
      );
    }
  } catch (e) {
    const line = operatorError(e);
    if (line === undefined) throw e;
    printError(`autopilot backup list: ${line}`);
    return EXIT.failed;
  }
  const complete = found.filter((s) => s.state === "complete" && s.manifest !== undefined);
  let archive: ArchiveView;
  try {
    archive = await archiveView(
      store,
      complete.map((s) => s.manifest!),
      clusterPrefix(config.backup.name),
      await lookupArchiveHead(config),
    );
  } catch (e) {
    printError(
      `autopilot backup list: cannot read the binlog archive in the ${store.kind} store: ${errorMessage(e)}`,
    );
    return EXIT.failed;
  }
  const problems = found.filter((s) => s.state !== "complete");
  const last = published.manifest?.name;
  const key = config.keys.lastBackup;
  if (published.error !== undefined) {
    printError(`autopilot backup list: cannot tell which snapshot is the last: ${published.error}`);
  } else if (last === undefined) {
    printError(`autopilot backup list: Consul names no snapshot as the last (${key} is not set)`);
  } else if (!complete.some((s) => s.name === last)) {
    printError(
      `autopilot backup list: Consul's ${key} names '${last}', but the store holds no complete snapshot of that name`,
    );
  }
  for (const p of problems) {
    printError(`autopilot backup list: ${p.state} snapshot '${p.name}': ${p.problem}`);
  }
  if (json) {
    print(JSON.stringify(
      {
        store: { kind: store.kind, location: store.location },
        last: published.error !== undefined ? null : last ?? null,
        lastKnown: published.error === undefined,
        snapshots: complete.map((s) => ({ ...s.manifest!, last: s.name === last })),
        problems: problems.map((p) => ({ name: p.name, state: p.state, problem: p.problem, keys: p.keys })),
        archive: {
          binlogs: archive.segments.length,
          bytes: archive.segments.reduce((n, s) => n + s.size, 0),
          problems: archive.problems,
          windows: archive.windows.map((w) => ({
            fromSnapshot: w.from.name,
            from: w.fromTime,
            to: w.toTime !== undefined ? isoSecond(w.toTime) : null,
            toGtid: w.toPosition,
            gapAfter: !w.complete,
          })),
        },
      },
      null,
      2,
    ));
    return EXIT.ok;
  }
  for (const p of archive.problems) {
    printError(`autopilot backup list: archived binlog ${p.key}: ${p.problem}`);
  }
  if (complete.length === 0) {
    print(`No complete snapshot in the ${store.kind} store at ${store.location}`);
    return EXIT.ok;
  }
  const rows = complete.map((s) => {
    const m = s.manifest!;
    return [
      s.name === last ? "*" : "",
      m.name,
      m.createdAt.replace("T", " ").replace(/\.\d+Z$/, "Z"),
      formatBytes(m.size),
      m.gtid || "-",
      m.nodeName,
    ];
  });
  const header = ["LAST", "NAME", "CREATED (UTC)", "SIZE", "GTID", "NODE"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const r of [header, ...rows]) print(r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd());
  print("");
  print(
    last !== undefined && published.error === undefined
      ? `* the last snapshot, as Consul's ${key} names it: new nodes restore it`
      : `(the last snapshot is unknown: see stderr)`,
  );
  print("");
  for (const line of describeArchive(archive)) print(line);
  return EXIT.ok;
}

/** What `backup list` shows of the binlog archive. */
interface ArchiveView {
  readonly segments: readonly Segment[];
  readonly problems: readonly { readonly key: string; readonly problem: string }[];
  readonly windows: readonly RecoveryWindow[];
}

async function archiveView(
  store: SnapshotStore,
  all: readonly Manifest[],
  cluster: string,
  head: string | undefined,
): Promise<ArchiveView> {
  // Only this cluster's snapshots (retention's name rule) and its binlog archive, `binlogs/<cluster>/`.
  const manifests = all.filter((m) => ofCluster(cluster, m.name));
  const problems: { key: string; problem: string }[] = [];
  const lost: Segment[] = [];
  const segments = await listSegments(store, {
    cluster,
    onInvalid: (key, problem) => problems.push({ key, problem }),
    onLost: (s) => lost.push(s),
  });
  const flavour = manifests[0]?.flavour ?? segments[0]?.flavour;
  if (flavour === undefined) return { segments, problems, windows: [] };
  const mine = (s: Segment) => s.flavour === flavour;
  const windows = recoverableWindows(
    flavour,
    manifests.filter((m) => m.flavour === flavour).map(snapshotPoint),
    segments.filter(mine),
    lost.filter(mine),
    head,
  );
  return { segments, problems, windows };
}

/** The archive's lines: its size, then each recoverable window and the gap after it, if any. */
export function describeArchive(a: ArchiveView): string[] {
  const time = (unix: number | undefined) =>
    unix === undefined ? "(no transaction archived)" : isoSecond(unix).replace("T", " ");
  if (a.segments.length === 0) {
    return [
      "Binlog archive: empty (the primary's binlog-archive task uploads its binlogs): restores reach snapshots only",
    ];
  }
  const bytes = a.segments.reduce((n, s) => n + s.size, 0);
  const lines = [
    `Binlog archive: ${a.segments.length} binlog file(s), ${formatBytes(bytes)} (compressed), from ${
      new Set(a.segments.map((s) => `${s.node}/${s.serverId}`)).size
    } server(s)`,
    "Recoverable windows (autopilot restore --to-time TIME, --to-gtid GTID or --to-end within one):",
  ];
  for (const [i, w] of a.windows.entries()) {
    lines.push(
      `  ${w.fromTime.replace("T", " ").replace(/\.\d+Z$/, "Z")} (snapshot ${w.from.name}) .. ${
        time(w.toTime)
      } (GTID ${w.toPosition || "-"})`,
    );
    if (!w.complete) {
      const next = a.windows[i + 1];
      lines.push(
        `  GAP: no archived binlog continues from ${w.toPosition || "(the snapshot)"}${
          next
            ? `; the next window starts at snapshot ${next.from.name}`
            : "; a newer snapshot starts a new window"
        }`,
      );
    }
  }
  if (a.windows.length === 0) lines.push("  none: no snapshot lies on the archived primary's history");
  return lines;
}

async function verify(config: Config, name: string | undefined): Promise<number> {
  const fail = (line: string): number => {
    printError(`autopilot backup verify: ${line}`);
    return EXIT.failed;
  };
  try {
    const store = await openStore(config);
    let published: Manifest | undefined;
    if (name === undefined) {
      const lookup = await lookupPublished(config);
      if (lookup.error !== undefined) {
        printError(
          `autopilot backup verify: cannot read the last snapshot from Consul (${lookup.error}): ` +
            "verifying the newest snapshot in the store instead",
        );
      }
      published = lookup.manifest;
    }
    const { manifest, source } = await findSnapshot(store, {
      ...(name !== undefined ? { name } : {}),
      ...(published ? { published } : {}),
    });
    log.info("Verifying snapshot {name} ({source}), taken {createdAt} on {node}", {
      name: manifest.name,
      source: describeSource(source),
      createdAt: manifest.createdAt,
      node: manifest.nodeName,
    });
    const head = await lookupArchiveHead(config);
    // Ctrl-C or a stop signal: stop the throwaway server and remove the scratch directory before exiting.
    const interrupted = new AbortController();
    const stop = () => interrupted.abort(new Error("interrupted by a signal"));
    const signals = ["SIGINT", "SIGTERM"] as const;
    for (const s of signals) Deno.addSignalListener(s, stop);
    let r;
    try {
      const keyring = await openKeyring(config.backup.encryption, interrupted.signal);
      r = await verifySnapshot({
        store,
        ...(keyring ? { keyring } : {}),
        manifest,
        tmpdir: config.mysql.tmpdir,
        osUser: config.mysql.osUser,
        cluster: clusterPrefix(config.backup.name),
        ...(head !== undefined ? { head } : {}),
        signal: interrupted.signal,
      });
    } catch (e) {
      if (interrupted.signal.aborted) {
        return fail(`verification of '${manifest.name}' interrupted; cleaned up`);
      }
      throw e;
    } finally {
      for (const s of signals) Deno.removeSignalListener(s, stop);
    }
    print(
      `Snapshot '${r.name}' is good: its SHA-256 and size match the manifest, it unpacks and prepares, its GTID ` +
        `${r.gtid || "(none)"} matches the manifest, and a server (${r.serverVersion}) opened it: ` +
        `${plural(r.databases, "database")}, ${plural(r.tables, "table")}, every table passed CHECK TABLE; ` +
        (r.binlogs === 0
          ? "no archived binlog follows it"
          : `${
            plural(r.binlogs, "archived binlog")
          } after it replayed to the archive's end, ${r.replayedTo}`),
    );
    return EXIT.ok;
  } catch (e) {
    if (e instanceof RangeError) {
      printError(`autopilot backup verify: ${e.message}: run 'autopilot backup list' for the names`);
      return EXIT.usage;
    }
    if (e instanceof ArchiveReplayError) {
      return fail(
        `Snapshot '${e.snapshot}' is good, but ${e.message}: a point-in-time restore from it cannot pass that ` +
          "point; take a new snapshot on the primary ('autopilot backup now')",
      );
    }
    if (e instanceof CorruptSnapshotError && e.message.endsWith(CORRUPT_ADVICE)) {
      return fail(
        `Snapshot '${e.snapshot}' is corrupt: ${e.problem}: do not restore it; take a new snapshot on the primary ` +
          "('autopilot backup now')",
      );
    }
    const line = operatorError(e);
    if (line !== undefined) return fail(line);
    throw e;
  }
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
