/**
 * Who this node is: the address peers reach it on and the memory it may use.
 *
 * @module
 */
import type { Config, EnvReader } from "./config.ts";

/** A network interface address, as `Deno.networkInterfaces()` reports it. */
export interface InterfaceAddress {
  readonly name: string;
  readonly family: "IPv4" | "IPv6";
  readonly address: string;
}

/**
 * The address peers use to reach this node: NODE_ADDRESS, else the address ContainerPilot advertised for the
 * `mysql` job (CONTAINERPILOT_MYSQL_IP), else eth0's IPv4 address, else the first non-loopback IPv4 address.
 *
 * @returns The address, or `undefined` when the node has no usable address.
 */
export function nodeAddress(
  config: Config,
  env: EnvReader,
  interfaces: readonly InterfaceAddress[],
): string | undefined {
  if (config.node.address) return config.node.address;
  const fromContainerPilot = env("CONTAINERPILOT_MYSQL_IP")?.trim();
  if (fromContainerPilot) return fromContainerPilot;
  const v4 = interfaces.filter((i) => i.family === "IPv4" && !i.address.startsWith("127."));
  return (v4.find((i) => i.name === "eth0") ?? v4[0])?.address;
}

/**
 * Memory available to this container: the cgroup limit if there is one, else the machine's memory.
 *
 * @param cgroupLimit The text of `memory.max` (cgroup v2) or `memory.limit_in_bytes` (v1), if readable.
 * @param machineTotal The machine's total memory in bytes.
 * @returns Bytes.
 */
export function memoryLimit(cgroupLimit: string | undefined, machineTotal: number): number {
  const limit = Number(cgroupLimit?.trim());
  // v1 reports "no limit" as a huge number; v2 as "max".
  return Number.isFinite(limit) && limit > 0 && limit < machineTotal ? limit : machineTotal;
}

/** Reads the cgroup memory limit and the machine's memory (the I/O half of {@link memoryLimit}). */
export async function readMemoryLimit(): Promise<number> {
  let cgroup: string | undefined;
  for (const path of ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]) {
    try {
      cgroup = await Deno.readTextFile(path);
      break;
    } catch {
      // not this cgroup version, or not readable
    }
  }
  return memoryLimit(cgroup, Deno.systemMemoryInfo().total);
}
