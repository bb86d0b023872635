import { assertEquals } from "./assert.ts";
import type { ReplicaStatus } from "../../src/mysql/flavour.ts";
import { replicaHealth, threadsOf } from "../../src/replica_health.ts";

const running: ReplicaStatus = {
  sourceHost: "10.0.0.11",
  sourcePort: 3306,
  ioRunning: "yes",
  sqlRunning: true,
  lagSeconds: 0,
  retrievedGtids: "0-1-5",
  lastIoError: "",
  lastSqlError: "",
};

Deno.test("replicaHealth(): both threads running within the limit is healthy, the limit itself included", () => {
  assertEquals(replicaHealth(running, 30), {
    healthy: true,
    reason: "replica of 10.0.0.11:3306, 0 s behind",
  });
  assertEquals(replicaHealth({ ...running, lagSeconds: 30 }, 30), {
    healthy: true,
    reason: "replica of 10.0.0.11:3306, 30 s behind",
  });
});

Deno.test("replicaHealth(): a stopped thread is unhealthy, with both threads' state and their errors", () => {
  assertEquals(
    replicaHealth({ ...running, sqlRunning: false, lastSqlError: "Error 1950 out-of-order" }, 30),
    {
      healthy: false,
      problem: "stopped",
      reason:
        "replication from 10.0.0.11:3306 is not running (I/O thread: yes, SQL thread: no): SQL: Error 1950 out-of-order",
    },
  );
  const connecting = {
    ...running,
    ioRunning: "connecting" as const,
    lagSeconds: null,
    lastIoError: "refused",
  };
  assertEquals(replicaHealth(connecting, 30), {
    healthy: false,
    problem: "stopped",
    reason:
      "replication from 10.0.0.11:3306 is not running (I/O thread: connecting, SQL thread: yes): I/O: refused",
  });
  assertEquals(
    threadsOf({ ...running, ioRunning: "no", sqlRunning: false, lastIoError: "a", lastSqlError: "b" }),
    "(I/O thread: no, SQL thread: no): I/O: a; SQL: b",
  );
  assertEquals(
    threadsOf({ ...running, ioRunning: "no", sqlRunning: false }),
    "(I/O thread: no, SQL thread: no)",
  );
});

Deno.test("replicaHealth(): lagging beyond the limit, or of unknown lag, is unhealthy", () => {
  assertEquals(replicaHealth({ ...running, lagSeconds: 31 }, 30), {
    healthy: false,
    problem: "lagging",
    reason: "replica of 10.0.0.11:3306 lags 31 s (limit 30 s)",
  });
  assertEquals(replicaHealth({ ...running, lagSeconds: null }, 30), {
    healthy: false,
    problem: "lag-unknown",
    reason: "replica of 10.0.0.11:3306 lags an unknown number of s (limit 30 s)",
  });
});

Deno.test("replicaHealth(): a server replicating from nobody is not a healthy replica", () => {
  const nobody = { healthy: false, problem: "not-replicating", reason: "replicates from nobody" } as const;
  assertEquals(replicaHealth(undefined, 30), nobody);
  assertEquals(replicaHealth({ ...running, sourceHost: "" }, 30), nobody);
});

Deno.test("replicaHealth(): a replica whose I/O thread reconnects stays healthy while its data is young enough", () => {
  const last = { source: "10.0.0.11:3306", lagSeconds: 3, at: 50_000 };
  const connecting = {
    ...running,
    ioRunning: "connecting" as const,
    lagSeconds: null,
    lastIoError: "refused",
  };
  assertEquals(replicaHealth(connecting, 30, { last, now: 60_000 }), {
    healthy: true,
    reason:
      "replica of 10.0.0.11:3306 reconnecting (I/O thread: connecting, SQL thread: yes): I/O: refused; " +
      "its data is at most 13 s old (limit 30 s)",
  });
  assertEquals(
    replicaHealth(connecting, 30, { last, now: 77_000 }).healthy,
    true,
    "3 + 27 = 30: the limit itself",
  );
  assertEquals(replicaHealth(connecting, 30, { last, now: 77_001 }).healthy, false);
  const ioError = {
    ...running,
    ioRunning: "no" as const,
    lagSeconds: null,
    lastIoError: "error reconnecting",
  };
  assertEquals(replicaHealth(ioError, 30, { last, now: 60_000 }).healthy, true, "stopped by an I/O error");
  // Not covered: a STOP REPLICA (no error), a stopped SQL thread, a clock that went backwards, no observation.
  assertEquals(
    replicaHealth({ ...running, ioRunning: "no", lagSeconds: null }, 30, { last, now: 60_000 }).healthy,
    false,
  );
  assertEquals(replicaHealth({ ...connecting, sqlRunning: false }, 30, { last, now: 60_000 }).healthy, false);
  assertEquals(replicaHealth(connecting, 30, { last, now: 40_000 }).healthy, false);
  assertEquals(
    replicaHealth(connecting, 30).healthy,
    false,
    "status and snapshots ask without one: not running",
  );
});
