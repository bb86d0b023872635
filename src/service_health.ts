/**
 * Every registered instance of a service with the state of its Consul checks, passing or not: what `autopilot
 * status` needs to say that a node's check is critical, warning or missing, where `ConsulStore`'s
 * `passingInstances()` lists only the passing ones.
 *
 * One read-only GET of Consul's `/v1/health/service/NAME` over `fetch`, with the same address, token and
 * per-request timeout as `ConsulStore`, and the same errors. (It belongs in `src/consul.ts` as a ConsulStore
 * method; it lives here until that file is free to change.)
 *
 * @module
 */
import type { ConsulConfig } from "./config.ts";
import { ConsulRequestError, ConsulUnavailableError } from "./consul.ts";
import { errorMessage } from "./text.ts";

/** A check's state as Consul reports it (a service in maintenance has a critical check). */
export type CheckState = "passing" | "warning" | "critical";

/** One registered instance of the service and the worst of its checks. */
export interface InstanceHealth {
  readonly id: string;
  /** The service address (ContainerPilot sets it), else the node's. */
  readonly address: string;
  readonly port: number;
  /** The worst state among its checks, the node's own (serfHealth) included: `passing` when all pass. */
  readonly status: CheckState;
  /** The worst check, when one is not passing: its name and Consul's output (first line, shortened). */
  readonly failing?: { readonly name: string; readonly output: string };
}

/** One row of `/v1/health/service/NAME`, as far as it is read. */
export interface HealthServiceRow {
  readonly Node?: { readonly Address?: string };
  readonly Service?: { readonly ID?: string; readonly Address?: string; readonly Port?: number };
  readonly Checks?: readonly { readonly Name?: string; readonly Status?: string; readonly Output?: string }[];
}

const RANK: Record<CheckState, number> = { passing: 0, warning: 1, critical: 2 };

/**
 * Turns Consul's rows into instances: pure, for tests. A check state Consul may add later counts as critical.
 *
 * @returns Instances sorted by id.
 */
export function instancesFromHealthRows(rows: readonly HealthServiceRow[]): InstanceHealth[] {
  return rows.filter((r) => typeof r.Service?.ID === "string").map((r) => {
    let worst: { state: CheckState; name: string; output: string } | undefined;
    for (const c of r.Checks ?? []) {
      const state: CheckState = c.Status === "passing" || c.Status === "warning" ? c.Status : "critical";
      if (state !== "passing" && (worst === undefined || RANK[state] > RANK[worst.state])) {
        worst = { state, name: c.Name ?? "?", output: firstLine(c.Output ?? "") };
      }
    }
    return {
      id: r.Service!.ID!,
      address: r.Service!.Address || r.Node?.Address || "",
      port: r.Service!.Port ?? 0,
      status: worst?.state ?? "passing",
      ...(worst ? { failing: { name: worst.name, output: worst.output } } : {}),
    };
  }).sort((a, b) => a.id.localeCompare(b.id));
}

function firstLine(text: string): string {
  const line = text.trim().split("\n")[0].trim();
  return line.length > 160 ? `${line.slice(0, 159)}…` : line;
}

/**
 * Reads every instance of `service` with its checks.
 *
 * @throws {ConsulUnavailableError} when Consul cannot be reached or answers 5xx; {@link ConsulRequestError}
 *   when it refuses (e.g. ACL).
 */
export async function serviceHealth(config: ConsulConfig, service: string): Promise<InstanceHealth[]> {
  const operation = "health service";
  let res: Response;
  try {
    res = await fetch(`${config.url}/v1/health/service/${encodeURIComponent(service)}`, {
      headers: config.token ? { "X-Consul-Token": config.token.reveal() } : {},
      signal: AbortSignal.timeout(config.timeoutMs),
    });
  } catch (e) {
    const timedOut = e instanceof DOMException && e.name === "TimeoutError";
    throw new ConsulUnavailableError(
      operation,
      timedOut ? `no answer within ${config.timeoutMs} ms` : errorMessage(e),
    );
  }
  const body = await res.text().catch(() => "");
  if (res.status >= 500) throw new ConsulUnavailableError(operation, `HTTP ${res.status}: ${body.trim()}`);
  if (!res.ok) throw new ConsulRequestError(operation, res.status, body.trim());
  let rows: unknown;
  try {
    rows = JSON.parse(body);
  } catch {
    throw new ConsulRequestError(operation, res.status, "the answer is not JSON");
  }
  return instancesFromHealthRows(Array.isArray(rows) ? rows : []);
}
