/**
 * Who this node is: the address peers reach it on and the memory it may use.
 *
 * @module
 */
import process from "node:process";
import type { Config, EnvReader } from "./config.ts";
import { bufferPoolBytes } from "./mysql/mycnf.ts";

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
 * What `process.constrainedMemory()` gave: its value, or why there is none (missing, or it threw).
 */
export type LimitReading = { readonly value: unknown } | { readonly error: string };

/** Where the memory figure came from. */
export type MemorySource =
  /** The container's (cgroup's) memory limit. */
  | "container limit"
  /** The machine's memory: the container has no limit below it. */
  | "no limit"
  /** The machine's memory: the limit could not be read, so a smaller one may exist. */
  | "unreadable";

/** The memory this container may use, and where that figure came from. */
export interface Memory {
  readonly bytes: number;
  readonly source: MemorySource;
  /** Why the limit could not be read (source `unreadable`). */
  readonly reason?: string;
}

/**
 * The variable the image's entrypoint (`image/entrypoint.sh`) sets to the text of the container's cgroup
 * `memory.max` (v2) or `memory/memory.limit_in_bytes` (v1) before it starts ContainerPilot. autopilot cannot
 * read those files itself (Deno refuses every /sys read short of `--allow-all`), and Deno's own
 * `process.constrainedMemory()` misses the limit on cgroup v1 hosts, where a container sees its cgroup at the
 * mount's root while /proc/self/cgroup names its path from the host's root.
 */
export const ENTRYPOINT_LIMIT_VARIABLE = "AUTOPILOT_CGROUP_MEMORY_LIMIT";

/**
 * The memory available to this container: the cgroup limit if there is one below the machine's memory, else
 * the machine's memory, saying which.
 *
 * @param reading What `process.constrainedMemory()` returned. Deno reports "no limit" as a huge number (v1's
 *   2^63 rounded down to pages) and as 0, which it also returns when it finds no cgroup file (a cgroup v1
 *   container, /sys/fs/cgroup not mounted): 0 alone therefore cannot tell "no limit" from "not found".
 * @param fromEntrypoint The cgroup file's text as the image's entrypoint read it
 *   ({@link ENTRYPOINT_LIMIT_VARIABLE}), if set: `max` (v2) or a number of bytes.
 * @param machineTotal The machine's total memory in bytes; a limit at or above it limits nothing.
 */
export function effectiveMemory(
  reading: LimitReading,
  fromEntrypoint: string | undefined,
  machineTotal: number,
): Memory {
  const limited = (limit: number): Memory =>
    limit < machineTotal
      ? { bytes: limit, source: "container limit" }
      : { bytes: machineTotal, source: "no limit" };
  const deno = "error" in reading ? undefined : reading.value;
  const denoNumber = typeof deno === "number" && Number.isFinite(deno) && deno >= 0;
  if (denoNumber && deno > 0) return limited(deno);
  const text = fromEntrypoint?.trim();
  if (text === "max") return { bytes: machineTotal, source: "no limit" };
  if (text !== undefined && /^\d+$/.test(text) && Number(text) > 0) return limited(Number(text));
  const why = "error" in reading
    ? reading.error
    : denoNumber
    ? "process.constrainedMemory() found no cgroup limit file"
    : `process.constrainedMemory() returned ${String(deno)}`;
  return {
    bytes: machineTotal,
    source: "unreadable",
    reason: text === undefined
      ? `${why}, and ${ENTRYPOINT_LIMIT_VARIABLE} is not set (the image's entrypoint sets it)`
      : `${why}, and ${ENTRYPOINT_LIMIT_VARIABLE} is '${text}', not a number of bytes or max`,
  };
}

/**
 * Asks Deno for the cgroup memory limit: `process.constrainedMemory()` reads the v2 `memory.max` or v1
 * `memory.limit_in_bytes` of the cgroup /proc/self/cgroup names. Reading those files ourselves is refused
 * under any permission set short of `--allow-all`; this needs only `--allow-sys=systemMemoryInfo`.
 */
export function readLimit(): LimitReading {
  const constrainedMemory = (process as { constrainedMemory?: () => unknown }).constrainedMemory;
  if (typeof constrainedMemory !== "function") {
    return { error: "this Deno has no process.constrainedMemory()" };
  }
  try {
    return { value: constrainedMemory.call(process) };
  } catch (e) {
    return { error: `process.constrainedMemory() failed: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/** Reads the container's memory limit and the machine's memory (the I/O half of {@link effectiveMemory}). */
export function readMemory(env: EnvReader): Memory {
  return effectiveMemory(readLimit(), env(ENTRYPOINT_LIMIT_VARIABLE), Deno.systemMemoryInfo().total);
}

/** The innodb_buffer_pool_size chosen, and what it was derived from. */
export interface BufferPoolChoice {
  readonly bytes: number;
  /** The memory it was derived from; absent when INNODB_BUFFER_POOL_SIZE set it. */
  readonly memory?: Memory;
}

/**
 * Chooses innodb_buffer_pool_size: INNODB_BUFFER_POOL_SIZE if set (then memory is never read), else derived
 * from the memory available ({@link bufferPoolBytes}).
 *
 * @param configured INNODB_BUFFER_POOL_SIZE in bytes, if set.
 * @param memory Reads the memory available; called only when `configured` is unset.
 */
export function chooseBufferPool(configured: number | undefined, memory: () => Memory): BufferPoolChoice {
  if (configured !== undefined) return { bytes: configured };
  const m = memory();
  return { bytes: bufferPoolBytes(m.bytes), memory: m };
}

/**
 * The log line that reports a {@link BufferPoolChoice}: a warning when the container's limit could not be
 * read, since the size then comes from the machine's memory and may be more than the container may use.
 */
export function describeBufferPool(
  choice: BufferPoolChoice,
): { readonly warn: boolean; readonly text: string } {
  const size = `innodb_buffer_pool_size = ${mib(choice.bytes)}`;
  const m = choice.memory;
  if (m === undefined) return { warn: false, text: `${size}, from INNODB_BUFFER_POOL_SIZE` };
  switch (m.source) {
    case "container limit":
      return { warn: false, text: `${size}, from the container's memory limit of ${mib(m.bytes)}` };
    case "no limit":
      return {
        warn: false,
        text: `${size}, from the machine's memory of ${
          mib(m.bytes)
        } (no container memory limit below it was found)`,
      };
    case "unreadable":
      return {
        warn: true,
        text: `${size}, from the machine's memory of ${mib(m.bytes)}, because the container's memory limit ` +
          `could not be read (${m.reason}): if the container has a smaller limit, set INNODB_BUFFER_POOL_SIZE`,
      };
  }
}

function mib(bytes: number): string {
  return `${Math.floor(bytes / 2 ** 20)}M`;
}
