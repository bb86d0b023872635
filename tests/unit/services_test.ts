import { assertEquals } from "./assert.ts";
import { loadConfig } from "../../src/config.ts";
import type { CriticalCheck } from "../../src/consul.ts";
import type { MemberRecord } from "../../src/ha/failover_plan.ts";
import { memberRecord } from "./member_record.ts";
import {
  containerPilotRegistration,
  memberServiceIds,
  planSweep,
  primaryServiceId,
  primaryServiceName,
  SWEEP_GRACE_MS,
} from "../../src/services.ts";

const config = loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "x", SERVICE_NAME: "shop" })[n], {
  hostname: () => "h",
});

function member(node: string, hostname?: string): MemberRecord {
  return memberRecord(node, hostname ? { hostname } : {});
}

function critical(serviceId: string): CriticalCheck {
  return { node: "consul-1", serviceId };
}

Deno.test("the primary service is SERVICE_NAME-primary, one id a node", () => {
  assertEquals(primaryServiceName(config), "shop-primary");
  assertEquals(primaryServiceId(config, "n1"), "shop-primary-n1");
});

Deno.test("memberServiceIds() names ContainerPilot's ids by host name and the primary's by node name", () => {
  assertEquals(memberServiceIds(config, member("n1", "c0ffee")), [
    "shop-c0ffee",
    "containerpilot-c0ffee",
    "shop-primary-n1",
  ]);
  // records written before the host name was recorded: NODE_NAME defaults to the host name
  assertEquals(memberServiceIds(config, member("n2")), ["shop-n2", "containerpilot-n2", "shop-primary-n2"]);
});

Deno.test("planSweep() removes a departed node's critical entries only after the grace period", () => {
  const members = { live: [member("n1", "a")], departed: [member("n2", "b")] };
  const checks = [critical("shop-b"), critical("containerpilot-b"), critical("shop-a"), critical("other-b")];
  const first = planSweep(config, checks, members, {}, 1000);
  assertEquals(first.remove, [], "nothing is removed when first seen");
  assertEquals(first.seen, { "shop-b": 1000, "containerpilot-b": 1000 }, "only the departed node's ids");

  const early = planSweep(config, checks, members, first.seen, 1000 + SWEEP_GRACE_MS - 1);
  assertEquals(early.remove, []);
  assertEquals(early.seen, first.seen, "the first sighting is kept");

  const late = planSweep(config, checks, members, first.seen, 1000 + SWEEP_GRACE_MS);
  assertEquals(late.remove.map((c) => c.serviceId), ["shop-b", "containerpilot-b"]);
  assertEquals(late.seen, {});
});

Deno.test("planSweep() leaves a node alone while its ContainerPilot heartbeats, however long its record is departed", () => {
  // Hooks stalled or cut off from Consul (a paused container, a partition): ContainerPilot still runs and
  // registers its services only once, so removing them would lose them until it restarts.
  const members = { live: [member("n1", "a")], departed: [member("n2", "b")] };
  const plan = planSweep(config, [critical("shop-b")], members, { "shop-b": 0 }, SWEEP_GRACE_MS * 10);
  assertEquals(plan, { remove: [], seen: {} });
});

Deno.test("planSweep() leaves a live node alone, and forgets an entry that is passing again", () => {
  // n2 came back on the same host (a restarted container): its record is held again.
  const back = { live: [member("n1", "a"), member("n2", "b")], departed: [member("n2", "b")] };
  const checks = [critical("shop-b"), critical("containerpilot-b")];
  const plan = planSweep(config, checks, back, { "shop-b": 0 }, SWEEP_GRACE_MS * 10);
  assertEquals(plan, { remove: [], seen: {} });

  const gone = { live: [member("n1", "a")], departed: [member("n2", "b")] };
  assertEquals(planSweep(config, [], gone, { "shop-b": 0 }, SWEEP_GRACE_MS * 10), { remove: [], seen: {} });
});

Deno.test("containerPilotRegistration() is the body ContainerPilot's fork sends for the SERVICE_NAME job", () => {
  // discovery/service.go registerService(): ID <name>-<hostname>, Name, Port, Address, and a TTL check whose
  // id Consul makes `service:<ID>`, passing, with the fork's note; Go leaves empty tags, meta and extras out.
  assertEquals(containerPilotRegistration(config, { hostname: "web-7", address: "10.0.0.7" }), {
    ID: "shop-web-7",
    Name: "shop",
    Port: 3306,
    Address: "10.0.0.7",
    Check: { TTL: "15s", Status: "passing", Notes: "TTL for shop set by containerpilot" },
  });
  assertEquals(memberServiceIds(config, member("n1", "web-7"))[0], "shop-web-7", "the id the sweep knows");
});
