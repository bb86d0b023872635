/**
 * Backup and restore throughput and peak memory, per dataset size, against the directory store and a real S3
 * server (versitygw on loopback), next to the raw backup tool on the same data:
 * - `mariabackup --backup --stream=mbstream > /dev/null`, and the same through zstd (the tools alone);
 * - `takeSnapshot()` into each store (mariabackup | zstd | SHA-256 | store);
 * - `restoreSnapshot()` from each store (store | SHA-256 | zstd -d | mbstream, then --prepare).
 *
 * Throughput is MiB of source datadir per second. Each backup and restore runs in a child Deno process of its
 * own, which reports its peak RSS (VmHWM): the memory `autopilot` itself would need (the tools' processes are
 * not counted).
 *
 * Each figure is the median of `--trials` runs (default 3), after one untimed run of the raw tool. The "idle"
 * row is a child that loads the same modules and opens the store, then exits: the baseline RSS.
 *
 * Run: `deno task bench:backup` (100 MB and 1 GB of rows) or `deno task bench:backup --sizes=100`. Prints a
 * table; asserts nothing.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { AwsClient } from "aws4fetch";
import { Secret } from "../src/config.ts";
import { takeSnapshot } from "../src/backup/backup.ts";
import { restoreSnapshot } from "../src/backup/restore.ts";
import type { Manifest } from "../src/backup/manifest.ts";
import { backupCommand, compressCommand } from "../src/backup/tools.ts";
import { LocalStore } from "../src/storage/local.ts";
import { S3Store } from "../src/storage/s3.ts";
import type { SnapshotStore } from "../src/storage/store.ts";
import { Harness, type MariadbNode, REPO_ROOT, type S3Server } from "../tests/integration/harness/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    sizes: { type: "string", default: "100,1000" },
    trials: { type: "string", default: "3" },
    child: { type: "boolean", default: false },
  },
});

const trials = Math.max(1, Number(values.trials) || 1);

/** Where a child process finds its store (read from stdin, so the S3 secret never reaches argv). */
type StoreSpec =
  | { kind: "local"; dir: string }
  | { kind: "s3"; endpoint: string; bucket: string; accessKey: string; secretKey: string };

/** What a child process does. */
type Job =
  | { op: "idle"; store: StoreSpec }
  | { op: "backup"; store: StoreSpec; cnf: string; socket: string; version: string }
  | { op: "restore"; store: StoreSpec; manifest: Manifest; datadir: string };

/** What a child process reports. */
interface JobResult {
  ms: number;
  peakKiB: number;
  manifest?: Manifest;
}

function openStore(spec: StoreSpec): SnapshotStore {
  return spec.kind === "local" ? new LocalStore(spec.dir) : new S3Store({
    endpoint: spec.endpoint,
    region: "us-east-1",
    bucket: spec.bucket,
    prefix: "bench/",
    forcePathStyle: true,
    accessKeyId: new Secret(spec.accessKey),
    secretAccessKey: new Secret(spec.secretKey),
  });
}

async function peakKiB(pid: number | "self"): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** The child: runs one job, prints its result as JSON. */
async function child(): Promise<void> {
  const job: Job = JSON.parse(await new Response(Deno.stdin.readable).text());
  const store = openStore(job.store);
  const t0 = performance.now();
  let manifest: Manifest | undefined;
  if (job.op === "backup") {
    manifest = await takeSnapshot({
      store,
      flavour: "mariadb",
      cnfPath: job.cnf,
      socket: job.socket,
      user: "root",
      nodeName: "bench",
      serverVersion: job.version,
      namePattern: `bench-${job.store.kind}-%Y-%m-%dT%H-%M-%SZ`,
    });
  } else if (job.op === "restore") {
    await restoreSnapshot({ store, manifest: job.manifest, datadir: job.datadir, flavour: "mariadb" });
  }
  const result: JobResult = { ms: performance.now() - t0, peakKiB: await peakKiB("self"), manifest };
  console.log(JSON.stringify(result));
}

async function runJob(job: Job): Promise<JobResult> {
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "bench/backup_bench.ts", "--child"],
    cwd: REPO_ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = proc.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(job)));
  await writer.close();
  const out = await proc.output();
  const text = new TextDecoder();
  if (!out.success) throw new Error(`${job.op} failed: ${text.decode(out.stderr)}`);
  return JSON.parse(text.decode(out.stdout).trim().split("\n").at(-1)!);
}

/** Times a shell pipeline (argv only; `$@` is the backup command). */
async function timeRaw(script: string, argv: string[]): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command("bash", {
    args: ["-c", `set -o pipefail; ${script}`, "bash", ...argv],
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - t0;
  if (!out.success) throw new Error(`raw backup failed: ${new TextDecoder().decode(out.stderr).slice(-500)}`);
  return ms;
}

async function fill(node: MariadbNode, megabytes: number): Promise<void> {
  // About 1 KB a row of hex digests: compresses about 2:1, like much real data (as bench/lifecycle_bench.ts).
  const payload = Array.from({ length: 28 }, (_, i) => `MD5(seq * ${i + 1})`).join(", ");
  await node.sql(
    "CREATE DATABASE IF NOT EXISTS app; " +
      "CREATE TABLE IF NOT EXISTS app.big (id INT PRIMARY KEY, payload VARCHAR(1024) NOT NULL)",
  );
  const rows = megabytes * 1000;
  const chunk = 50_000;
  for (let from = 1; from <= rows; from += chunk) {
    const to = Math.min(rows, from + chunk - 1);
    await node.sql(`INSERT INTO app.big SELECT seq, CONCAT(${payload}) FROM app.seq_${from}_to_${to}`);
  }
}

async function createBucket(s3: S3Server, bucket: string): Promise<void> {
  const client = new AwsClient({
    accessKeyId: s3.accessKey,
    secretAccessKey: s3.secretKey,
    service: "s3",
    region: s3.region,
  });
  const res = await client.fetch(`${s3.endpoint}/${bucket}`, { method: "PUT" });
  const answer = await res.text();
  if (!res.ok) throw new Error(`cannot create bucket ${bucket}: HTTP ${res.status} ${answer}`);
}

async function repeat<T>(fn: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < trials; i++) out.push(await fn());
  return out;
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

function maxPeak(results: JobResult[]): number {
  return Math.max(...results.map((r) => r.peakKiB));
}

function mib(kib: number): string {
  return `${(kib / 1024).toFixed(0)} MiB`;
}

async function duKiB(path: string): Promise<number> {
  const out = await new Deno.Command("du", { args: ["-sk", path], stdout: "piped" }).output();
  return Number(new TextDecoder().decode(out.stdout).split("\t")[0]);
}

async function main(): Promise<void> {
  const sizes = values.sizes!.split(",").map(Number).filter((n) => n > 0);
  const fmtS = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  console.log(
    `autopilot-mysql backup and restore figures (MariaDB, this machine; median of ${trials} runs; ` +
      "restore includes mariabackup --prepare)\n",
  );
  console.log("| dataset | what | time | MiB/s of datadir | peak RSS (autopilot) |");
  console.log("| --- | --- | --- | --- | --- |");
  for (const size of sizes) {
    await using h = await Harness.create();
    const node = await h.startNode(1, { extraCnf: { innodb_buffer_pool_size: "256M" } });
    const s3 = await h.startS3();
    await createBucket(s3, "bench");
    await fill(node, size);
    await node.sql("FLUSH TABLES");
    const datadirMiB = (await duKiB(node.dataDir)) / 1024;
    const version = (await node.sql("SELECT VERSION()"))[0][0];
    const rate = (ms: number) => (datadirMiB / (ms / 1000)).toFixed(0);
    const rows: string[][] = [];

    const argv = backupCommand("mariadb", { defaultsFile: node.cnf, user: "root", socket: node.socket });
    const zstd = compressCommand().join(" ");
    await timeRaw('"$@" > /dev/null', argv); // warm-up: the first run reads the datadir from disk
    const raw = median(await repeat(() => timeRaw('"$@" > /dev/null', argv)));
    rows.push(["mariabackup --stream=mbstream > /dev/null", fmtS(raw), rate(raw), "-"]);
    const rawZstd = median(await repeat(() => timeRaw(`"$@" | ${zstd} > /dev/null`, argv)));
    rows.push([`mariabackup --stream=mbstream \\| ${zstd} > /dev/null`, fmtS(rawZstd), rate(rawZstd), "-"]);

    const stores: [string, StoreSpec][] = [
      ["directory", { kind: "local", dir: `${h.dir}/snapshots` }],
      ["S3 (versitygw, loopback)", {
        kind: "s3",
        endpoint: s3.endpoint,
        bucket: "bench",
        accessKey: s3.accessKey,
        secretKey: s3.secretKey,
      }],
    ];
    let stored = 0;
    for (const [label, store] of stores) {
      const idle = await runJob({ op: "idle", store });
      rows.push([`idle child (baseline), ${label}`, "-", "-", mib(idle.peakKiB)]);
      const backups = await repeat(async () => {
        await new Promise((r) => setTimeout(r, 1100)); // snapshot names have 1 s resolution
        return await runJob({ op: "backup", store, cnf: node.cnf, socket: node.socket, version });
      });
      const manifest = backups[0].manifest!;
      stored = manifest.size;
      const backupMs = median(backups.map((b) => b.ms));
      rows.push([`backup to ${label}`, fmtS(backupMs), rate(backupMs), mib(maxPeak(backups))]);
      const restores = await repeat(async () => {
        const datadir = `${h.dir}/restored-${store.kind}/data`;
        const result = await runJob({ op: "restore", store, manifest, datadir });
        await Deno.remove(`${h.dir}/restored-${store.kind}`, { recursive: true });
        return result;
      });
      const restoreMs = median(restores.map((r) => r.ms));
      rows.push([`restore from ${label}`, fmtS(restoreMs), rate(restoreMs), mib(maxPeak(restores))]);
    }
    const dataset = `${size} MB of rows (datadir ${datadirMiB.toFixed(0)} MiB, snapshot ${
      (stored / 2 ** 20).toFixed(0)
    } MiB)`;
    for (const [i, row] of rows.entries()) console.log(`| ${i === 0 ? dataset : ""} | ${row.join(" | ")} |`);
  }
}

if (values.child) await child();
else await main();
