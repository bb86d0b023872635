import { assert, assertEquals } from "./assert.ts";
import { loadConfig } from "../../src/config.ts";
import {
  chooseBufferPool,
  describeBufferPool,
  effectiveMemory,
  type Memory,
  nodeAddress,
} from "../../src/node.ts";

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

const GiB = 2 ** 30;
const MiB = 2 ** 20;

Deno.test("effectiveMemory() uses a container limit below the machine's memory", () => {
  assertEquals(effectiveMemory({ value: GiB }, undefined, 24 * GiB), {
    bytes: GiB,
    source: "container limit",
  });
  assertEquals(
    effectiveMemory({ value: GiB }, "2147483648", 24 * GiB).bytes,
    GiB,
    "Deno's own reading first",
  );
});

Deno.test("effectiveMemory() takes the limit the image's entrypoint read when Deno finds none (cgroup v1)", () => {
  assertEquals(effectiveMemory({ value: 0 }, "1073741824\n", 24 * GiB), {
    bytes: GiB,
    source: "container limit",
  });
  assertEquals(effectiveMemory({ error: "no function" }, " 1073741824 ", 24 * GiB).bytes, GiB);
});

Deno.test("effectiveMemory() takes the machine's memory when the container has no limit below it", () => {
  const noLimit = { bytes: 8 * GiB, source: "no limit" };
  assertEquals(
    effectiveMemory({ value: 9223372036854772000 }, undefined, 8 * GiB),
    noLimit,
    "v1's 'unlimited'",
  );
  assertEquals(
    effectiveMemory({ value: 8 * GiB }, undefined, 8 * GiB),
    noLimit,
    "a limit equal to the machine's",
  );
  assertEquals(
    effectiveMemory({ value: 64 * GiB }, undefined, 8 * GiB),
    noLimit,
    "a limit above the machine's",
  );
  assertEquals(
    effectiveMemory({ value: 0 }, "max\n", 8 * GiB),
    noLimit,
    "v2's 'max', read by the entrypoint",
  );
  assertEquals(
    effectiveMemory({ value: 0 }, "9223372036854771712", 8 * GiB),
    noLimit,
    "v1's, by the entrypoint",
  );
});

Deno.test("effectiveMemory() says so when the limit could not be read", () => {
  // Deno's 0 is also what it answers when it finds no cgroup file: alone, it proves nothing.
  const zero = effectiveMemory({ value: 0 }, undefined, 8 * GiB);
  assertEquals([zero.bytes, zero.source], [8 * GiB, "unreadable"]);
  assert(zero.reason?.includes("found no cgroup limit file"), zero.reason);
  assert(zero.reason?.includes("AUTOPILOT_CGROUP_MEMORY_LIMIT is not set"), zero.reason);
  assertEquals(effectiveMemory({ error: "NotCapable: Requires sys access" }, undefined, 8 * GiB), {
    bytes: 8 * GiB,
    source: "unreadable",
    reason: "NotCapable: Requires sys access, and AUTOPILOT_CGROUP_MEMORY_LIMIT is not set (the image's " +
      "entrypoint sets it)",
  });
  for (const value of [undefined, "1073741824", -1, NaN, Infinity]) {
    const m = effectiveMemory({ value }, undefined, 8 * GiB);
    assertEquals([m.bytes, m.source], [8 * GiB, "unreadable"], String(value));
    assert(m.reason?.includes(`returned ${value}`), m.reason);
  }
  const bad = effectiveMemory({ value: 0 }, "lots", 8 * GiB);
  assertEquals(bad.source, "unreadable");
  assert(bad.reason?.includes("is 'lots', not a number of bytes or max"), bad.reason);
});

Deno.test("chooseBufferPool() takes INNODB_BUFFER_POOL_SIZE without reading memory", () => {
  const choice = chooseBufferPool(256 * MiB, () => {
    throw new Error("memory was read");
  });
  assertEquals(choice, { bytes: 256 * MiB });
  assertEquals(describeBufferPool(choice), {
    warn: false,
    text: "innodb_buffer_pool_size = 256M, from INNODB_BUFFER_POOL_SIZE",
  });
});

Deno.test("chooseBufferPool() derives the size from the memory, and the log line names its source", () => {
  const from = (memory: Memory) => describeBufferPool(chooseBufferPool(undefined, () => memory));
  assertEquals(from({ bytes: GiB, source: "container limit" }), {
    warn: false,
    text: "innodb_buffer_pool_size = 448M, from the container's memory limit of 1024M",
  });
  assertEquals(from({ bytes: 16 * GiB, source: "no limit" }), {
    warn: false,
    text: "innodb_buffer_pool_size = 11200M, from the machine's memory of 16384M " +
      "(no container memory limit below it was found)",
  });
  const unread = from({ bytes: 16 * GiB, source: "unreadable", reason: "NotCapable: Requires sys access" });
  assertEquals(unread.warn, true, "a size from the machine's memory when the limit is unknown is a warning");
  assertEquals(
    unread.text,
    "innodb_buffer_pool_size = 11200M, from the machine's memory of 16384M, because the container's memory " +
      "limit could not be read (NotCapable: Requires sys access): if the container has a smaller limit, " +
      "set INNODB_BUFFER_POOL_SIZE",
  );
});
