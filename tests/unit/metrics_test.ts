import { assert, assertEquals } from "./assert.ts";
import { metricRequest, METRICS } from "../../src/metrics.ts";

Deno.test("metricRequest() posts the full names and values as JSON to ContainerPilot's /v3/metric", () => {
  const text = metricRequest({ role: 2, health_checks_total: 1, replication_lag_seconds: Number.NaN });
  const [head, body] = text.split("\r\n\r\n");
  const lines = head.split("\r\n");
  assertEquals(lines[0], "POST /v3/metric HTTP/1.1");
  assert(lines.includes("Content-Type: application/json"));
  assert(lines.includes(`Content-Length: ${body.length}`));
  assertEquals(JSON.parse(body), { autopilot_mysql_role: 2, autopilot_mysql_health_checks_total: 1 });
});

Deno.test("metric names are Prometheus names and counters end in _total", () => {
  for (const m of METRICS) {
    assert(/^[a-z][a-z0-9_]*$/.test(m.name), m.name);
    assertEquals(m.type === "counter", m.name.endsWith("_total"), m.name);
  }
  assertEquals(new Set(METRICS.map((m) => m.name)).size, METRICS.length);
});
