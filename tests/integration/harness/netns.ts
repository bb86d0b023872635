/**
 * A private test network made of Linux network namespaces:
 *
 * - a hub namespace `apt<tag>_hub` with a bridge `br0`;
 * - one namespace per node, `apt<tag>_n<k>`, with `lo` up and `eth0` at `10.99.<subnet>.<10+k>/24`, its veth
 *   peer `a<tag>h<k>` on the hub bridge;
 * - a host leg `apt<tag>-host` at `10.99.<subnet>.1/24` in the root namespace, so tests reach every node.
 *
 * No default route, forwarding or NAT: traffic never leaves these namespaces and veths. `cut(k)` downs the
 * hub side of node k's veth (TCP to the node then hangs, there is no RST); `heal(k)` brings it back.
 *
 * @module
 */

import {
  ip,
  NETNS_PREFIX,
  randomId,
  recordRun,
  run,
  runOk,
  RunOptions,
  RunResult,
  withStateLock,
} from "./proc.ts";

/** One node's place in the network. */
export interface NetNode {
  /** 1-based node number. */
  readonly index: number;
  /** Namespace name, `apt<tag>_n<k>`. */
  readonly ns: string;
  /** The node's eth0 address, `10.99.<subnet>.<10+k>`. */
  readonly address: string;
  /** Hub-side interface of the node's veth (set down by `cut`). */
  readonly hubIf: string;
}

/** Options for {@linkcode createNetwork}. */
export interface NetworkOptions {
  /** Number of node namespaces (1..99). */
  nodes: number;
  /** `apt` plus 4 characters [a-z0-9]; default: a fresh random one. */
  prefix?: string;
}

/** A created network. All node arguments are 1-based node numbers. */
export interface Network {
  /** The per-run prefix, `apt<tag>`. */
  readonly prefix: string;
  /** The 4-character run tag. */
  readonly tag: string;
  /** Third octet of 10.99.X.0/24. */
  readonly subnet: number;
  /** Address of the root namespace's leg, `10.99.<subnet>.1`. */
  readonly hostAddress: string;
  /** Name of the host leg interface in the root namespace. */
  readonly hostIf: string;
  /** Name of the hub namespace. */
  readonly hubNs: string;
  readonly nodes: readonly NetNode[];
  /** Node k (throws for an unknown k). */
  node(k: number): NetNode;
  /** Every namespace of this network (hub included). */
  namespaces(): string[];
  /** Cuts node k off: the hub side of its veth goes down. */
  cut(k: number): Promise<void>;
  /** Undoes {@linkcode cut}. */
  heal(k: number): Promise<void>;
  /** Runs a command inside node k's namespace. */
  exec(k: number, argv: string[], opts?: RunOptions): Promise<RunResult>;
  /** Deletes the host leg and every namespace. Idempotent. */
  destroy(): Promise<void>;
}

async function usedSubnets(): Promise<Set<number>> {
  const used = new Set<number>();
  const text = (await runOk(await ip(), ["-4", "route", "show", "table", "all"])) +
    (await runOk(await ip(), ["-4", "-o", "addr", "show"]));
  for (const m of text.matchAll(/\b10\.99\.(\d+)\./g)) used.add(Number(m[1]));
  // Also a covering route such as 10.0.0.0/8 or 10.99.0.0/16 makes every 10.99.X ambiguous.
  if (/(^|\s)(10\.0\.0\.0\/8|10\.99\.0\.0\/16)\b/m.test(text)) {
    throw new Error("10.99.0.0/16 is routed on host");
  }
  return used;
}

/**
 * Builds the namespaces, bridge and veths for `nodes` nodes on a free 10.99.X.0/24 (X in 100..249, not in the
 * host's routes). On failure, whatever was created is removed before the error is rethrown.
 */
export async function createNetwork(opts: NetworkOptions): Promise<Network> {
  const n = opts.nodes;
  if (!Number.isInteger(n) || n < 1 || n > 99) {
    throw new Error(`createNetwork: nodes must be 1..99, got ${n}`);
  }
  const prefix = opts.prefix ?? NETNS_PREFIX + randomId(4);
  const m = prefix.match(/^apt([a-z0-9]{4})$/);
  if (!m) {
    throw new Error(`createNetwork: prefix must be "apt" plus 4 of [a-z0-9], got ${JSON.stringify(prefix)}`);
  }
  const tag = m[1];
  await recordRun(tag);
  const IP = await ip();
  const hubNs = `${prefix}_hub`;
  const hostIf = `${prefix}-host`;
  const hostPeer = `a${tag}hh`;
  const nsNames = Array.from({ length: n }, (_, i) => `${prefix}_n${i + 1}`);
  const nodes: NetNode[] = [];
  let subnet = -1;
  let destroyed = false;

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    // The host leg first (it lives in the root namespace); deleting one end of a veth deletes both.
    await run(IP, ["link", "del", hostIf]);
    const existing = new Set(
      (await runOk(IP, ["netns", "list"])).split("\n").map((l) => l.trim().split(" ")[0]),
    );
    for (const ns of [...nsNames, hubNs]) {
      if (existing.has(ns)) await runOk(IP, ["netns", "del", ns]);
    }
  };

  const node = (k: number): NetNode => {
    const x = nodes[k - 1];
    if (!x) throw new Error(`network ${prefix}: no node ${k} (nodes are 1..${nodes.length})`);
    return x;
  };

  try {
    await withStateLock(async () => {
      const used = await usedSubnets();
      const free: number[] = [];
      for (let x = 100; x < 250; x++) if (!used.has(x)) free.push(x);
      if (free.length === 0) throw new Error("createNetwork: no free 10.99.X.0/24 subnet (X in 100..249)");
      subnet = free[crypto.getRandomValues(new Uint32Array(1))[0] % free.length];
      await runOk(IP, ["netns", "add", hubNs]);
      await runOk(IP, ["-n", hubNs, "link", "set", "lo", "up"]);
      await runOk(IP, ["-n", hubNs, "link", "add", "br0", "type", "bridge"]);
      await runOk(IP, ["-n", hubNs, "link", "set", "br0", "up"]);
      // The host leg is made inside the lock so its route is visible to the next run's subnet choice.
      await runOk(IP, ["link", "add", hostIf, "type", "veth", "peer", "name", hostPeer, "netns", hubNs]);
      await runOk(IP, ["addr", "add", `10.99.${subnet}.1/24`, "dev", hostIf]);
      await runOk(IP, ["link", "set", hostIf, "up"]);
      await runOk(IP, ["-n", hubNs, "link", "set", hostPeer, "master", "br0"]);
      await runOk(IP, ["-n", hubNs, "link", "set", hostPeer, "up"]);
    });
    for (let k = 1; k <= n; k++) {
      nodes.push({
        index: k,
        ns: nsNames[k - 1],
        address: `10.99.${subnet}.${10 + k}`,
        hubIf: `a${tag}h${k}`,
      });
    }
    for (const x of nodes) {
      const address = x.address;
      const tmpName = `a${tag}n${x.index}`;
      await runOk(IP, ["netns", "add", x.ns]);
      await runOk(IP, ["-n", x.ns, "link", "set", "lo", "up"]);
      await runOk(IP, [
        "link",
        "add",
        tmpName,
        "netns",
        x.ns,
        "type",
        "veth",
        "peer",
        "name",
        x.hubIf,
        "netns",
        hubNs,
      ]);
      await runOk(IP, ["-n", x.ns, "link", "set", tmpName, "name", "eth0"]);
      await runOk(IP, ["-n", x.ns, "addr", "add", `${address}/24`, "dev", "eth0"]);
      await runOk(IP, ["-n", x.ns, "link", "set", "eth0", "up"]);
      await runOk(IP, ["-n", hubNs, "link", "set", x.hubIf, "master", "br0"]);
      await runOk(IP, ["-n", hubNs, "link", "set", x.hubIf, "up"]);
    }
  } catch (e) {
    await destroy().catch(() => {});
    throw e;
  }

  return {
    prefix,
    tag,
    subnet,
    hostAddress: `10.99.${subnet}.1`,
    hostIf,
    hubNs,
    nodes,
    node,
    namespaces: () => [hubNs, ...nodes.map((x) => x.ns)],
    cut: async (k: number) => {
      await runOk(IP, ["-n", hubNs, "link", "set", node(k).hubIf, "down"]);
    },
    heal: async (k: number) => {
      await runOk(IP, ["-n", hubNs, "link", "set", node(k).hubIf, "up"]);
    },
    exec: (k: number, argv: string[], runOpts?: RunOptions) =>
      run(IP, ["netns", "exec", node(k).ns, ...argv], runOpts),
    destroy,
  };
}
