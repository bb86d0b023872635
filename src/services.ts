/**
 * The services this cluster shows in Consul's catalog, besides the keys:
 *
 * - `SERVICE_NAME` (`mysql`) and `containerpilot` (telemetry) are registered by ContainerPilot on every node;
 * - `SERVICE_NAME-primary` is registered by autopilot itself, on the primary only, from the health pass that
 *   makes it or finds it writable, with a TTL check each later pass keeps passing. A replica therefore has no
 *   failing check, and a loaded host cannot make the primary's entry flap or arrive late;
 * - entries of a dead node (its member record departed) are removed by the primary's pass once they have been
 *   critical for {@link SWEEP_GRACE_MS}: ContainerPilot's own registrations of a killed container would
 *   otherwise stay critical in the catalog for good.
 *
 * Service IDs follow ContainerPilot's rule, `<name>-<hostname>`; the primary service's is
 * `SERVICE_NAME-primary-NODE_NAME`.
 *
 * @module
 */
import type { Config } from "./config.ts";
import type { ConsulStore, CriticalCheck } from "./consul.ts";
import type { MemberRecord } from "./failover.ts";
import type { PrimaryRecord } from "./ha.ts";

/** The name of the service only the writable primary is registered under. */
export function primaryServiceName(config: Config): string {
  return `${config.serviceName}-primary`;
}

/** This node's primary service id. */
export function primaryServiceId(config: Config, node: string): string {
  return `${primaryServiceName(config)}-${node}`;
}

/** How long Consul keeps a primary service whose check went critical (its node died) before removing it. */
const PRIMARY_DEREGISTER_AFTER = "1m";

/**
 * Shows this node as the primary: passes its check, registering the service first if the agent does not
 * have it (the first pass as primary, or an agent that lost its state).
 */
export async function advertisePrimary(
  config: Config,
  consul: ConsulStore,
  self: PrimaryRecord,
): Promise<void> {
  const id = primaryServiceId(config, self.node);
  if (await consul.passServiceCheck(id)) return;
  await consul.registerService({
    id,
    name: primaryServiceName(config),
    address: self.address,
    port: self.port,
    ttlSeconds: config.session.ttlSeconds,
    deregisterAfter: PRIMARY_DEREGISTER_AFTER,
  });
}

/** Removes this node's primary service (it is not, or no longer, the writable primary). */
export async function withdrawPrimary(config: Config, consul: ConsulStore, node: string): Promise<void> {
  await consul.deregisterService(primaryServiceId(config, node));
}

/** How long a dead node's entries must have been seen critical before the primary removes them. */
export const SWEEP_GRACE_MS = 60_000;

/** The service ids a member's node registers: ContainerPilot's two and the primary one. */
export function memberServiceIds(config: Config, member: MemberRecord): string[] {
  const host = member.hostname ?? member.node;
  return [`${config.serviceName}-${host}`, `containerpilot-${host}`, primaryServiceId(config, member.node)];
}

/** What {@link planSweep} decides. */
export interface SweepPlan {
  /** Critical checks to remove now. */
  readonly remove: readonly CriticalCheck[];
  /** When each still-waiting dead entry was first seen (service id to epoch ms): the next pass's `seen`. */
  readonly seen: Readonly<Record<string, number>>;
}

/**
 * Which critical entries belong to departed members (and to no live one), and which of those have been seen
 * so for {@link SWEEP_GRACE_MS}. Pure.
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
  const liveIds = new Set(members.live.flatMap((m) => memberServiceIds(config, m)));
  const deadIds = new Set(
    members.departed.flatMap((m) => memberServiceIds(config, m)).filter((id) => !liveIds.has(id)),
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
