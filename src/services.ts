/**
 * The services this cluster shows in Consul's catalog, besides the keys:
 *
 * - `SERVICE_NAME` (`mysql`) and `containerpilot` (telemetry) are registered by ContainerPilot on every node;
 * - `SERVICE_NAME-primary` is registered by autopilot itself, on the primary only, from the health pass that
 *   makes it or finds it writable, with a TTL check each later pass keeps passing. A replica therefore has no
 *   failing check, and a loaded host cannot make the primary's entry flap or arrive late;
 * - entries of a dead node are removed by the primary's pass once they have been so for
 *   {@link SWEEP_GRACE_MS} (see {@link planSweep}): ContainerPilot's own registrations of a killed container
 *   would otherwise stay critical in the catalog for good.
 *
 * Service IDs follow ContainerPilot's rule, `<name>-<hostname>`; the primary service's is
 * `SERVICE_NAME-primary-NODE_NAME`.
 *
 * ContainerPilot's fork registers its `SERVICE_NAME` service once per process (discovery/service.go: its
 * `wasRegistered` flag is never reset), so after the agent lost it (Consul lost its data, an agent restarted
 * without its state) the fork only sends TTL updates that fail, and the service never comes back until
 * ContainerPilot restarts. {@link ensureContainerPilotService} fills that gap: the `autopilot health` check,
 * run by ContainerPilot (never `on-change`, which also runs while ContainerPilot is in maintenance, nor a pass
 * outside ContainerPilot, whose registration nobody would keep passing), registers it again, exactly as
 * the fork does, when it finds the agent without it, so the fork's next TTL update passes.
 *
 * @module
 */
import type { Config } from "./config.ts";
import type { ConsulStore, CriticalCheck } from "./consul.ts";
import type { MemberRecord } from "./ha/failover_plan.ts";
import type { PrimaryRecord } from "./ha/decide.ts";
import { ConsulClusterKv } from "./cluster_kv.ts";

/** The name of the service only the writable primary is registered under. */
export function primaryServiceName(config: Pick<Config, "serviceName">): string {
  return `${config.serviceName}-primary`;
}

/** This node's primary service id. */
export function primaryServiceId(config: Config, node: string): string {
  return `${primaryServiceName(config)}-${node}`;
}

/** How long Consul keeps a primary service whose check went critical (its node died) before removing it. */
const PRIMARY_DEREGISTER_AFTER = "1m";

/**
 * Shows this node as the primary: passes its check, registering the service first when asked to (the first
 * pass as primary, a new address) or when the agent does not have it (an agent that lost its state). It
 * registers only after reading once more that the primary lock is this session's and ready: a hand-over or a
 * fence since this pass read its facts would otherwise advertise a node that is no longer primary.
 */
export async function advertisePrimary(
  config: Config,
  consul: ConsulStore,
  self: PrimaryRecord,
  session: string,
  opts: { register: boolean },
): Promise<void> {
  const id = primaryServiceId(config, self.node);
  if (!opts.register && await consul.passServiceCheck(id)) return;
  const lock = await new ConsulClusterKv(config, consul).primary();
  if (lock.session !== session || lock.record?.ready !== true) return;
  await consul.registerService({
    id,
    name: primaryServiceName(config),
    address: self.address,
    port: self.port,
    // Twice the session's TTL, as Consul's own session expiry: a pass or two late (a loaded host) keeps it.
    ttlSeconds: 2 * config.session.ttlSeconds,
    deregisterAfter: PRIMARY_DEREGISTER_AFTER,
  });
}

/** Removes this node's primary service (it is not, or no longer, the writable primary). */
export async function withdrawPrimary(config: Config, consul: ConsulStore, node: string): Promise<void> {
  await consul.deregisterService(primaryServiceId(config, node));
}

/**
 * How long a dead node's entries must have been seen so before the primary removes them. Long, because
 * ContainerPilot registers a service once per process: an entry removed from a node that was only paused or
 * cut off is not registered again until its ContainerPilot restarts.
 */
export const SWEEP_GRACE_MS = 5 * 60_000;

/** The service ids a member's node registers: ContainerPilot's two and the primary one. */
export function memberServiceIds(config: Config, member: MemberRecord): string[] {
  const host = member.hostname ?? member.node;
  return [
    `${config.serviceName}-${host}`,
    containerPilotServiceId(host),
    primaryServiceId(config, member.node),
  ];
}

/** ContainerPilot's own (telemetry) service id on a host: ContainerPilot heartbeats it itself every 5 s. */
function containerPilotServiceId(host: string): string {
  return `containerpilot-${host}`;
}

/** What {@link planSweep} decides. */
export interface SweepPlan {
  /** Critical checks to remove now. */
  readonly remove: readonly CriticalCheck[];
  /** When each still-waiting dead entry was first seen (service id to epoch ms): the next pass's `seen`. */
  readonly seen: Readonly<Record<string, number>>;
}

/**
 * Which critical entries belong to a node that is gone, and which of those have been seen so for
 * {@link SWEEP_GRACE_MS}. A node is gone when its member record has no session (autopilot's hooks stopped
 * renewing it), no live record names its host, and its `containerpilot` entry is critical too (ContainerPilot
 * itself stopped heartbeating). Pure.
 *
 * @param seen What the previous sweep returned as `seen`.
 */
export function planSweep(
  config: Config,
  critical: readonly CriticalCheck[],
  members: { readonly live: readonly MemberRecord[]; readonly departed: readonly MemberRecord[] },
  seen: Readonly<Record<string, number>>,
  now: number,
): SweepPlan {
  const criticalIds = new Set(critical.map((c) => c.serviceId));
  const liveIds = new Set(members.live.flatMap((m) => memberServiceIds(config, m)));
  const deadIds = new Set(
    members.departed
      .filter((m) => criticalIds.has(containerPilotServiceId(m.hostname ?? m.node)))
      .flatMap((m) => memberServiceIds(config, m))
      .filter((id) => !liveIds.has(id)),
  );
  const remove: CriticalCheck[] = [];
  const next: Record<string, number> = {};
  for (const check of critical) {
    if (!deadIds.has(check.serviceId)) continue;
    const since = seen[check.serviceId] ?? now;
    if (now - since >= SWEEP_GRACE_MS) remove.push(check);
    else next[check.serviceId] = since;
  }
  return { remove, seen: next };
}

/** The `ttl` of the `SERVICE_NAME` job's health check in the shipped containerpilot.json5 (seconds). */
export const CONTAINERPILOT_SERVICE_TTL_SECONDS = 15;

/**
 * The registration ContainerPilot's fork sends for the `SERVICE_NAME` job (discovery/service.go
 * `registerService`, with jobs/config.go's id `<name>-<hostname>`; the shipped job sets no tags, meta,
 * initial_status or consul extras, which Go's encoder then leaves out), as the body of
 * `PUT /v1/agent/service/register`. Its check id is Consul's `service:<id>`, which the fork's TTL updates name.
 * Pure.
 */
export function containerPilotRegistration(
  config: Pick<Config, "serviceName" | "mysql">,
  a: { readonly hostname: string; readonly address: string },
): Record<string, unknown> {
  const name = config.serviceName;
  return {
    ID: containerPilotJobServiceId(name, a.hostname),
    Name: name,
    Port: config.mysql.port,
    Address: a.address,
    Check: {
      TTL: `${CONTAINERPILOT_SERVICE_TTL_SECONDS}s`,
      Status: "passing",
      Notes: `TTL for ${name} set by containerpilot`,
    },
  };
}

/** ContainerPilot's id for a job's service: `<name>-<hostname>`. */
export function containerPilotJobServiceId(name: string, hostname: string): string {
  return `${name}-${hostname}`;
}

/**
 * Registers the `SERVICE_NAME` service the way ContainerPilot's fork does, when the agent does not have it.
 * Only for a pass that reports healthy: the fork registers on a passing check, and sends its TTL update right
 * after.
 *
 * @returns Whether it was missing (and is registered now).
 * @throws {Error} one line (src/consul.ts's errors), when the agent cannot be asked or refuses.
 */
export async function ensureContainerPilotService(
  config: Pick<Config, "serviceName" | "mysql">,
  consul: ConsulStore,
  a: { readonly hostname: string; readonly address: string },
): Promise<boolean> {
  const body = containerPilotRegistration(config, a);
  if (await consul.hasAgentService(String(body.ID))) return false;
  await consul.registerServiceAs(config.serviceName, body);
  return true;
}
