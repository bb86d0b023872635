/**
 * The least-privilege Consul ACL policy a node's token (CONSUL_HTTP_TOKEN) needs, written from what
 * src/consul.ts is asked to do for this configuration. README's "Consul ACL policy" is this function's text for
 * the defaults (`deno task docs` writes it); the ACL integration test creates exactly this policy in a Consul
 * whose default policy is `deny`, and runs a whole lifecycle with a token that has nothing else.
 *
 * Where each rule comes from (Consul 1.14's checks, agent/consul/*_endpoint.go and agent/acl.go):
 * - `key_prefix "SERVICE_NAME-"` read: each pass's one recursive read of the cluster's keys
 *   (src/cluster_kv.ts); Consul leaves out of it what the token may not read, which src/consul.ts refuses.
 * - `key` write on each key autopilot writes or holds as a lock, and `key_prefix "SERVICE_NAME-members/"`
 *   write for the member records; FAILOVER_PAUSE_KEY is only read (an operator writes it). A key renamed
 *   outside the prefix gets a rule of its own.
 * - `session_prefix ""` write: sessions are created on the agent's own node, whose name autopilot does not
 *   know, renewed, read and destroyed.
 * - `service` write on `SERVICE_NAME` (registered again as ContainerPilot does, src/services.ts),
 *   `SERVICE_NAME-primary` (autopilot's own, with its TTL check) and `containerpilot` (ContainerPilot's
 *   telemetry service, whose dead nodes' entries the primary removes: a catalog deregister needs service
 *   write on the service); write includes the read of the health queries on them.
 * - `node_prefix ""` read: Consul filters a health query's rows by the node's read permission.
 * Nothing reads the agent's own endpoints (`agent` rules) or the operator ones.
 *
 * @module
 */
import { type Config, loadConfig } from "./config.ts";
import { clusterKeys } from "./cluster_kv.ts";
import { primaryServiceName } from "./services.ts";

/** ContainerPilot's fixed name for its telemetry service. */
export const CONTAINERPILOT_TELEMETRY_SERVICE = "containerpilot";

/** One rule of the policy, and why it is there. */
export interface PolicyRule {
  readonly kind: "key" | "key_prefix" | "session_prefix" | "service" | "node_prefix";
  readonly name: string;
  readonly policy: "read" | "write";
  readonly why: string;
}

/** The rules, in the order the policy lists them. Pure. */
export function consulPolicyRules(config: Pick<Config, "serviceName" | "keys">): PolicyRule[] {
  const k = clusterKeys(config);
  const rules: PolicyRule[] = [
    {
      kind: "key_prefix",
      name: k.prefix,
      policy: "read",
      why: "each pass reads every key of the cluster at once",
    },
  ];
  const written: [string, string][] = [
    [k.primary, "the primary lock (PRIMARY_KEY)"],
    [k.failoverLock, "held while a failover or switchover runs (FAILOVER_LOCK_KEY)"],
    [k.backupLock, "held while a snapshot is taken (BACKUP_LOCK_KEY)"],
    [k.lastBackup, "the last snapshot's manifest (LAST_BACKUP_KEY)"],
    [k.lastBinlog, "the binlog current at the last snapshot (LAST_BINLOG_KEY)"],
    [k.lastVerified, "the last verification of a snapshot (LAST_VERIFIED_KEY)"],
    [k.cluster, "the cluster's identity, written once"],
    [k.archive, "the binlog archive's progress"],
  ];
  const seen = new Set<string>();
  for (const [name, why] of written) {
    if (seen.has(name)) continue;
    seen.add(name);
    rules.push({ kind: "key", name, policy: "write", why });
  }
  rules.push({ kind: "key_prefix", name: k.members, policy: "write", why: "each node's member record" });
  if (!k.failoverPause.startsWith(k.prefix) && !seen.has(k.failoverPause)) {
    rules.push({
      kind: "key",
      name: k.failoverPause,
      policy: "read",
      why: "FAILOVER_PAUSE_KEY (an operator writes it)",
    });
  }
  rules.push(
    { kind: "session_prefix", name: "", policy: "write", why: "each node's session, on its agent's node" },
    {
      kind: "service",
      name: config.serviceName,
      policy: "write",
      why:
        "ContainerPilot's service of the mysql job, which autopilot registers again when the agent lost it",
    },
    {
      kind: "service",
      name: primaryServiceName(config),
      policy: "write",
      why: "the writable primary's service and its TTL check",
    },
    {
      kind: "service",
      name: CONTAINERPILOT_TELEMETRY_SERVICE,
      policy: "write",
      why: "ContainerPilot's telemetry service; the primary removes dead nodes' entries",
    },
    {
      kind: "node_prefix",
      name: "",
      policy: "read",
      why: "health queries list only nodes the token may read",
    },
  );
  return rules;
}

/** The policy as HCL rules, one rule a line, each with its reason as a comment. Pure. */
export function consulPolicyHcl(config: Pick<Config, "serviceName" | "keys">): string {
  const rules = consulPolicyRules(config);
  const heads = rules.map((r) => `${r.kind} ${JSON.stringify(r.name)} { policy = "${r.policy}" }`);
  const width = Math.max(...heads.map((h) => h.length));
  return heads.map((h, i) => `${h.padEnd(width)}  # ${rules[i].why}`).join("\n") + "\n";
}

/** The policy for the defaults (SERVICE_NAME=mysql, no key renamed): README's, and the ACL test's. */
export function defaultConsulPolicy(): string {
  const config = loadConfig((n) => n === "MYSQL_REPL_PASSWORD" ? "-" : undefined, { hostname: () => "node" });
  return consulPolicyHcl(config);
}
