import { assertEquals } from "./assert.ts";
import { loadConfig } from "../../src/config.ts";
import { memoryLimit, nodeAddress } from "../../src/node.ts";

const config = (extra: Record<string, string> = {}) =>
  loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "x", ...extra })[n], { hostname: () => "h" });
const ifaces = [
  { name: "lo", family: "IPv4" as const, address: "127.0.0.1" },
  { name: "eth1", family: "IPv4" as const, address: "192.168.5.2" },
  { name: "eth0", family: "IPv6" as const, address: "fe80::1" },
  { name: "eth0", family: "IPv4" as const, address: "10.0.0.7" },
];

Deno.test("nodeAddress() prefers NODE_ADDRESS, then ContainerPilot's address, then eth0's IPv4", () => {
  assertEquals(nodeAddress(config({ NODE_ADDRESS: "10.9.9.9" }), () => "10.1.1.1", ifaces), "10.9.9.9");
  assertEquals(
    nodeAddress(config(), (n) => n === "CONTAINERPILOT_MYSQL_IP" ? "10.1.1.1" : undefined, ifaces),
    "10.1.1.1",
  );
  assertEquals(nodeAddress(config(), () => undefined, ifaces), "10.0.0.7");
  assertEquals(
    nodeAddress(config(), () => undefined, ifaces.filter((i) => i.name !== "eth0")),
    "192.168.5.2",
  );
  assertEquals(nodeAddress(config(), () => undefined, [ifaces[0]]), undefined);
});

Deno.test("memoryLimit() uses a cgroup limit below the machine's memory, else the machine's", () => {
  assertEquals(memoryLimit("1073741824\n", 8 * 2 ** 30), 2 ** 30);
  assertEquals(memoryLimit("max\n", 8 * 2 ** 30), 8 * 2 ** 30);
  assertEquals(memoryLimit("9223372036854771712", 8 * 2 ** 30), 8 * 2 ** 30, "cgroup v1's 'unlimited'");
  assertEquals(memoryLimit(undefined, 4096), 4096);
});
