/**
 * Metrics, exported through ContainerPilot's telemetry endpoint (Prometheus format, `:9090/metrics`).
 *
 * ContainerPilot owns the collectors: `containerpilot.json5` declares each metric below under `telemetry`, and
 * the hooks send values to ContainerPilot's control socket (`POST /v3/metric`, the same call as
 * `containerpilot -putmetric`). A gauge is set to the value, a counter is increased by it, a histogram observes
 * it. Sending is best effort: without ContainerPilot (tests, a shell) nothing listens and nothing happens.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";

const log = getLogger(["autopilot", "metrics"]);

/** One metric as ContainerPilot's telemetry declares it; the full name is `autopilot_mysql_<name>`. */
export interface MetricSpec {
  readonly name: string;
  readonly type: "gauge" | "counter" | "histogram";
  readonly help: string;
}

/** Every metric autopilot sends. The README's metric table and containerpilot.json5 must list the same. */
export const METRICS = Object.freeze(
  [
    {
      name: "role",
      type: "gauge",
      help: "This node's role: 2 primary, 1 replica, 0 neither (starting, errant, fenced)",
    },
    { name: "healthy", type: "gauge", help: "1 when the last health check passed, else 0" },
    { name: "replication_lag_seconds", type: "gauge", help: "Seconds this replica is behind its source" },
    { name: "health_checks_total", type: "counter", help: "Health checks run" },
    { name: "health_check_failures_total", type: "counter", help: "Health checks that failed" },
    { name: "health_check_seconds", type: "histogram", help: "Duration of a health check" },
    {
      name: "failovers_total",
      type: "counter",
      help: "Failovers this node ran that appointed a new primary",
    },
    { name: "failover_seconds", type: "histogram", help: "From taking the failover lock to the appointment" },
    {
      name: "errant_transactions_saved_total",
      type: "counter",
      help: "Saves of this errant node's extra transactions to the snapshot store (errant-transactions/)",
    },
    { name: "backups_total", type: "counter", help: "Snapshots this node took and published" },
    { name: "backup_failures_total", type: "counter", help: "Snapshots this node failed to take or store" },
    {
      name: "backup_verifications_total",
      type: "counter",
      help: "Snapshots this node set out to verify (BACKUP_VERIFY)",
    },
    {
      name: "backup_verification_failures_total",
      type: "counter",
      help: "Verifications that found a snapshot bad or could not run",
    },
    { name: "backup_seconds", type: "histogram", help: "Duration of a snapshot, stored and checked" },
    {
      name: "last_backup_timestamp_seconds",
      type: "gauge",
      help: "When the snapshot Consul names as the last was taken (Unix time; age = time() - this)",
    },
    {
      name: "last_backup_size_bytes",
      type: "gauge",
      help: "Stored size of the snapshot Consul names as the last",
    },
    {
      name: "binlog_archive_lag_seconds",
      type: "gauge",
      help:
        "At the primary's last archiving run: age of the oldest transaction not yet archived (0 when none)",
    },
    { name: "binlog_archive_runs_total", type: "counter", help: "Archiving runs on the primary" },
    {
      name: "binlog_archive_failures_total",
      type: "counter",
      help: "Archiving runs that failed (binlogs not archived)",
    },
    { name: "binlog_archived_files_total", type: "counter", help: "Binlog files this node archived" },
    {
      name: "binlog_archive_gaps_total",
      type: "counter",
      help: "Gaps found: binlogs purged before they were archived",
    },
  ] as const satisfies readonly MetricSpec[],
);

/** A metric's short name. */
export type MetricName = (typeof METRICS)[number]["name"];

/** The prefix of every full metric name (ContainerPilot's `namespace_subsystem_`). */
export const METRIC_PREFIX = "autopilot_mysql_";

/** ContainerPilot's control socket (its default; containerpilot.json5 does not move it). */
export const CONTROL_SOCKET = "/var/run/containerpilot.socket";

/**
 * The HTTP request that sends `values` to ContainerPilot's control socket.
 *
 * @returns The request's bytes, as text (HTTP/1.1, one connection per request).
 */
export function metricRequest(values: Readonly<Partial<Record<MetricName, number>>>): string {
  const body = JSON.stringify(
    Object.fromEntries(
      Object.entries(values).filter(([, v]) => Number.isFinite(v)).map((
        [k, v],
      ) => [`${METRIC_PREFIX}${k}`, v]),
    ),
  );
  return [
    "POST /v3/metric HTTP/1.1",
    "Host: control",
    "Content-Type: application/json",
    `Content-Length: ${new TextEncoder().encode(body).byteLength}`,
    "Connection: close",
    "",
    body,
  ].join("\r\n");
}

/**
 * Sends metric values to ContainerPilot. Never throws and waits at most half a second: metrics must not hold a
 * hook up.
 */
export async function putMetrics(
  values: Readonly<Partial<Record<MetricName, number>>>,
  socket: string = CONTROL_SOCKET,
): Promise<void> {
  if (Object.keys(values).length === 0) return;
  let conn: Deno.UnixConn | undefined;
  const timer = setTimeout(() => conn?.close(), 500);
  try {
    conn = await Deno.connect({ transport: "unix", path: socket });
    await conn.write(new TextEncoder().encode(metricRequest(values)));
    const buffer = new Uint8Array(256);
    const n = await conn.read(buffer);
    const status = new TextDecoder().decode(buffer.subarray(0, n ?? 0)).split(" ")[1];
    if (status !== "200") {
      log.debug("ContainerPilot answered {status} to metrics", { status: status ?? "nothing" });
    }
  } catch (e) {
    // No ContainerPilot here (or no permission to its socket): nothing to report to.
    log.debug("Metrics not sent: {e}", { e: String(e) });
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch {
      // closed by the timer
    }
  }
}
