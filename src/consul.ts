/**
 * Consul: sessions, locks, keys and health queries, over npm:consul.
 *
 * Nothing from npm:consul or node:http leaves this module. A Consul that cannot be reached (refused, timed out,
 * no leader, 5xx) becomes {@link ConsulUnavailableError}; callers treat it as "Consul is down" (a primary then
 * fences itself). A lock held by someone else is a plain `false`, never an error; a session that no longer
 * exists is {@link SessionGoneError} from lock calls and `false` from {@link ConsulStore.renewSession}.
 *
 * Connections are kept alive (npm:consul's default). Deno's node:http had keep-alive regressions in 2026
 * (a PUT retried on a stale socket lost its body and hung); under the pinned Deno 2.9.6 a PUT on a stale pooled
 * socket after a Consul restart succeeds, and `tests/integration/consul_test.ts` checks exactly that on every run,
 * so a Deno upgrade that brings the bug back fails a test. See docs/DEVELOPING.md, "Consul keep-alive".
 *
 * @module
 */
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import Consul from "consul";
import type { ConsulConfig } from "./config.ts";

/** Consul could not be reached or could not answer (no leader, server error, timeout). */
export class ConsulUnavailableError extends Error {
  constructor(operation: string, detail: string) {
    super(`Cannot reach Consul (${operation}): ${detail}`);
    this.name = "ConsulUnavailableError";
  }
}

/** Consul refused a request for a reason that retrying will not fix (ACL denied, bad request). */
export class ConsulRequestError extends Error {
  readonly status: number;
  constructor(operation: string, status: number, detail: string) {
    super(`Consul refused ${operation} (HTTP ${status}): ${detail}`);
    this.name = "ConsulRequestError";
    this.status = status;
  }
}

/** The session named in a lock operation no longer exists (expired or destroyed). */
export class SessionGoneError extends Error {
  readonly sessionId: string;
  constructor(sessionId: string) {
    super(`Consul session ${sessionId} no longer exists (expired or destroyed): create a new one`);
    this.name = "SessionGoneError";
    this.sessionId = sessionId;
  }
}

/** One key as Consul stores it. */
export interface KvEntry {
  readonly key: string;
  /** The value as text (empty string for an empty value). */
  readonly value: string;
  /** The session holding the key as a lock, if any. */
  readonly session?: string;
  readonly lockIndex: number;
  readonly modifyIndex: number;
}

/** One passing instance of a service. */
export interface ServiceInstance {
  readonly id: string;
  readonly name: string;
  readonly node: string;
  /** The service address (ContainerPilot sets it), else the node's. */
  readonly address: string;
  readonly port: number;
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
}

/** What a session is created with. */
export interface SessionOptions {
  readonly name: string;
  readonly ttlSeconds: number;
  /**
   * How long Consul refuses to hand a lock to another session after this one is invalidated.
   * Short: fencing (read-only at TTL/2) already protects the window. @default 2
   */
  readonly lockDelaySeconds?: number;
  /** What happens to held keys when the session is invalidated. @default "release" */
  readonly behavior?: "release" | "delete";
}

interface PapiError extends Error {
  statusCode?: number;
  code?: string;
  isPapi?: boolean;
  response?: { body?: unknown };
}

/**
 * Consul operations autopilot needs, each named for what it does. Compare-and-set and lock operations say so
 * in their names and return whether they took effect.
 */
export class ConsulStore {
  readonly #client: Consul;
  readonly #agent: HttpAgent | HttpsAgent;
  readonly url: string;

  /**
   * Creates a client for the configured agent. It connects lazily: constructing never touches the network.
   *
   * @param config The Consul settings (address, token, per-request timeout).
   */
  constructor(config: ConsulConfig) {
    this.url = config.url;
    this.#agent = config.scheme === "https"
      ? new HttpsAgent({ keepAlive: true })
      : new HttpAgent({ keepAlive: true });
    this.#client = new Consul(
      {
        host: config.host,
        port: config.port,
        secure: config.scheme === "https",
        agent: this.#agent,
        // papi reads `timeout` from the client options and from per-request defaults.
        timeout: config.timeoutMs,
        defaults: { ...(config.token ? { token: config.token.reveal() } : {}), timeout: config.timeoutMs },
      } as ConstructorParameters<typeof Consul>[0],
    );
  }

  // --- sessions -------------------------------------------------------------------------------

  /**
   * Creates a TTL session with no node or service checks (only the TTL invalidates it).
   *
   * @returns The session id.
   * @throws {ConsulUnavailableError} when Consul cannot be reached.
   */
  async createSession(options: SessionOptions): Promise<string> {
    const result = await this.#call("session create", () =>
      this.#client.session.create(
        {
          name: options.name,
          ttl: `${options.ttlSeconds}s`,
          lockdelay: `${options.lockDelaySeconds ?? 2}s`,
          behavior: options.behavior ?? "release",
          // An empty list means "no checks": the default would tie the session to serfHealth of this agent's node.
          checks: [],
          nodechecks: [],
        } as Parameters<Consul["session"]["create"]>[0],
      ));
    return result.ID;
  }

  /**
   * Renews a session's TTL.
   *
   * @returns `true` if renewed, `false` if the session no longer exists (create a new one).
   * @throws {ConsulUnavailableError} when Consul cannot be reached.
   */
  async renewSession(id: string): Promise<boolean> {
    try {
      const result = await this.#call("session renew", () => this.#client.session.renew(id));
      return Array.isArray(result) && result.length > 0;
    } catch (e) {
      if (e instanceof ConsulRequestError && e.status === 404) return false;
      throw e;
    }
  }

  /**
   * Renews the given session if it still exists, otherwise creates a new one.
   *
   * @param id The session id from an earlier run, if any.
   * @returns The live session id and whether it was newly created.
   */
  async ensureSession(
    id: string | undefined,
    options: SessionOptions,
  ): Promise<{ id: string; created: boolean }> {
    if (id !== undefined && await this.renewSession(id)) return { id, created: false };
    return { id: await this.createSession(options), created: true };
  }

  /** Whether a session exists. */
  async sessionExists(id: string): Promise<boolean> {
    const result = await this.#call("session info", () => this.#client.session.info(id));
    return Array.isArray(result) ? result.length > 0 : Boolean(result);
  }

  /** Destroys a session; held locks are released (with the session's lock-delay). Missing is fine. */
  async destroySession(id: string): Promise<void> {
    await this.#call("session destroy", () => this.#client.session.destroy(id));
  }

  // --- locks ------------------------------------------------------------------------------------

  /**
   * Tries to take `key` as a lock for `sessionId`, writing `value`.
   *
   * @returns `true` if this session now holds it (also when it already did), `false` if another session does
   *   or the lock-delay of a previous holder is still in force.
   * @throws {SessionGoneError} if the session does not exist.
   */
  async tryAcquireLock(key: string, sessionId: string, value: string): Promise<boolean> {
    // npm:consul gives `undefined` rather than `false` for a refused write: only a literal true counts.
    return (await this.#lockCall(
      "lock acquire",
      sessionId,
      () => this.#client.kv.set({ key, value, acquire: sessionId }),
    )) === true;
  }

  /**
   * Like {@link ConsulStore.tryAcquireLock}, but only if the key is still as it was read: one Consul transaction
   * checks its ModifyIndex (0: that it does not exist) and takes the lock, so no write made in between is lost.
   *
   * @param modifyIndex The key's ModifyIndex when read ({@link ConsulStore.get}), or 0 if it did not exist.
   * @returns `true` if this session now holds it; `false` if the key changed since it was read, another session
   *   holds it, or the lock-delay of a previous holder is still in force.
   * @throws {SessionGoneError} if the session does not exist.
   */
  async tryAcquireLockIfUnchanged(
    key: string,
    sessionId: string,
    value: string,
    modifyIndex: number,
  ): Promise<boolean> {
    const check = modifyIndex === 0
      ? { Verb: "check-not-exists", Key: key }
      : { Verb: "check-index", Key: key, Index: modifyIndex };
    const lock = {
      Verb: "lock",
      Key: key,
      Value: btoa(String.fromCharCode(...new TextEncoder().encode(value))),
      Session: sessionId,
    };
    try {
      // npm:consul sends the array as the body, as Consul expects; its typings describe another shape.
      const txn = this.#client.transaction as unknown as { create(operations: unknown[]): Promise<unknown> };
      await txn.create([{ KV: check }, { KV: lock }]);
      return true;
    } catch (e) {
      // Consul answers 409 with the failed operation's reason when a check or the lock fails.
      const err = e as PapiError;
      const errors = (err?.response?.body as { Errors?: { What?: string }[] } | undefined)?.Errors;
      if (err?.statusCode === 409 && Array.isArray(errors)) {
        if (errors.some((x) => /invalid session/i.test(x.What ?? ""))) throw new SessionGoneError(sessionId);
        return false;
      }
      throw translate("lock acquire", e);
    }
  }

  /**
   * Releases `key` if `sessionId` holds it. Consul writes the request body as the key's new value on release,
   * so pass the value to leave behind (e.g. the record of who held it last).
   *
   * @returns `true` if released, `false` if this session did not hold it.
   */
  async releaseLock(key: string, sessionId: string, value = ""): Promise<boolean> {
    return (await this.#lockCall(
      "lock release",
      sessionId,
      () => this.#client.kv.set({ key, value, release: sessionId }),
    )) === true;
  }

  // --- keys -------------------------------------------------------------------------------------

  /** Reads a key; `undefined` if it does not exist. */
  async get(key: string): Promise<KvEntry | undefined> {
    const item = await this.#call("kv get", () => this.#client.kv.get({ key }));
    return item ? toEntry(item) : undefined;
  }

  /** Every key under a prefix (one request), e.g. all of `SERVICE_NAME/`. */
  async getPrefix(prefix: string): Promise<KvEntry[]> {
    const items = await this.#call(
      "kv get recurse",
      () => this.#client.kv.get({ key: prefix, recurse: true }),
    );
    if (!items) return [];
    return (Array.isArray(items) ? items : [items]).map(toEntry);
  }

  /**
   * Reads a key holding JSON.
   *
   * @returns The parsed value, or `undefined` if the key does not exist.
   * @throws {SyntaxError} naming the key if its value is not JSON.
   */
  async getJson<T>(key: string): Promise<{ value: T; modifyIndex: number } | undefined> {
    const entry = await this.get(key);
    if (entry === undefined) return undefined;
    try {
      return { value: JSON.parse(entry.value) as T, modifyIndex: entry.modifyIndex };
    } catch {
      throw new SyntaxError(
        `Cannot parse Consul key '${key}' as JSON: current value is '${entry.value.slice(0, 80)}'`,
      );
    }
  }

  /** Writes a key unconditionally. */
  async put(key: string, value: string): Promise<void> {
    await this.#call("kv put", () => this.#client.kv.set({ key, value }));
  }

  /** Writes a value as JSON unconditionally. */
  async putJson(key: string, value: unknown): Promise<void> {
    await this.put(key, JSON.stringify(value));
  }

  /**
   * Compare-and-set: writes only if the key's ModifyIndex is still `modifyIndex` (0: only if it does not exist).
   *
   * @returns `true` if written, `false` if someone changed the key first.
   */
  async putIfUnchanged(key: string, value: string, modifyIndex: number): Promise<boolean> {
    return (await this.#call("kv cas", () => this.#client.kv.set({ key, value, cas: modifyIndex }))) === true;
  }

  /** Compare-and-set for JSON values; see {@link ConsulStore.putIfUnchanged}. */
  async putJsonIfUnchanged(key: string, value: unknown, modifyIndex: number): Promise<boolean> {
    return await this.putIfUnchanged(key, JSON.stringify(value), modifyIndex);
  }

  /** Deletes a key (a missing key is fine). */
  async delete(key: string): Promise<void> {
    await this.#call("kv delete", () => this.#client.kv.del({ key }));
  }

  // --- health -----------------------------------------------------------------------------------

  /**
   * The instances of a service whose every check passes (the same query ContainerPilot's watches make).
   *
   * @returns Instances sorted by id.
   */
  async passingInstances(service: string): Promise<ServiceInstance[]> {
    const rows = await this.#call(
      "health service",
      () => this.#client.health.service({ service, passing: true }),
    );
    return (rows as HealthRow[]).map(toInstance).sort((a, b) => a.id.localeCompare(b.id));
  }

  /**
   * The checks of the whole catalog that are critical now (`/v1/health/state/critical`).
   *
   * @returns One entry a check, service checks only (node checks such as serfHealth are left out).
   */
  async criticalServiceChecks(): Promise<CriticalCheck[]> {
    const rows = await this.#call("health state", () => this.#client.health.state({ state: "critical" }));
    return (rows as CheckRow[]).filter((r) => r.ServiceID).map((r) =>
      Object.freeze({ node: r.Node, serviceId: r.ServiceID })
    );
  }

  // --- agent services ---------------------------------------------------------------------------

  /**
   * Registers (or replaces) a service on the agent this client talks to, with one TTL check that starts
   * passing and that Consul removes, with the service, once it has been critical for `deregisterAfter`.
   */
  async registerService(service: AgentService): Promise<void> {
    // npm:consul's typings make `timeout` required on every check; a TTL check has none (its code sends only
    // the fields given), hence the cast.
    type Register = Parameters<Consul["agent"]["service"]["register"]>[0] & object;
    await this.#call("agent service register", () =>
      this.#client.agent.service.register({
        id: service.id,
        name: service.name,
        address: service.address,
        port: service.port,
        check: {
          name: `${service.name} TTL`,
          ttl: `${service.ttlSeconds}s`,
          status: "passing",
          deregistercriticalserviceafter: service.deregisterAfter,
          notes: `TTL for ${service.name}, set by autopilot`,
        },
      } as unknown as Register));
  }

  /**
   * Marks a service's TTL check passing.
   *
   * @returns false when the agent does not know the check (never registered, or lost by the agent).
   */
  async passServiceCheck(serviceId: string): Promise<boolean> {
    try {
      await this.#call(
        "agent check pass",
        () => this.#client.agent.check.pass({ id: `service:${serviceId}` }),
      );
      return true;
    } catch (e) {
      if (e instanceof ConsulRequestError && e.status === 404) return false;
      // Consul 1.14 answers 500 "Unknown check ID" for a check it does not have.
      if (
        e instanceof ConsulUnavailableError && /unknown check|does not have associated ttl/i.test(e.message)
      ) {
        return false;
      }
      throw e;
    }
  }

  /**
   * Removes a service: from the agent this client talks to when it is registered there, else from the
   * catalog of `node` (a service of a dead node's own agent, which will never remove it).
   *
   * @returns false when neither knew it.
   */
  async deregisterService(serviceId: string, node?: string): Promise<boolean> {
    try {
      await this.#call("agent service deregister", () => this.#client.agent.service.deregister(serviceId));
      return true;
    } catch (e) {
      const unknown = (e instanceof ConsulRequestError && e.status === 404) ||
        (e instanceof ConsulUnavailableError && /unknown service/i.test(e.message));
      if (!unknown) throw e;
    }
    if (node === undefined) return false;
    return await this.#call(
      "catalog deregister",
      () => this.#client.catalog.deregister({ node, serviceid: serviceId }),
    ).then((r) => r !== false);
  }

  /**
   * Every registered instance of a service with the worst state of its checks, passing or not (what
   * `autopilot status` needs to say that a node's check is critical, warning or missing).
   *
   * @returns Instances sorted by id.
   */
  async serviceHealth(service: string): Promise<InstanceHealth[]> {
    const rows = await this.#call("health service", () => this.#client.health.service({ service }));
    return instancesFromHealthRows(Array.isArray(rows) ? rows as HealthServiceRow[] : []);
  }

  /** Closes the pooled keep-alive sockets. Call it when done (tests check for leaked sockets). */
  close(): void {
    this.#agent.destroy();
  }

  async #lockCall(operation: string, sessionId: string, fn: () => Promise<boolean>): Promise<boolean> {
    try {
      return await this.#call(operation, fn);
    } catch (e) {
      // Consul answers 500 "invalid session" for a session that does not exist.
      if (e instanceof ConsulRequestError && /invalid session/i.test(e.message)) {
        throw new SessionGoneError(sessionId);
      }
      if (e instanceof ConsulUnavailableError && /invalid session/i.test(e.message)) {
        throw new SessionGoneError(sessionId);
      }
      throw e;
    }
  }

  async #call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw translate(operation, e);
    }
  }
}

/** A service check that is critical, as `/v1/health/state/critical` lists it. */
export interface CriticalCheck {
  /** The Consul node whose agent holds the service. */
  readonly node: string;
  readonly serviceId: string;
}

/** A service this node registers on its agent itself (not through ContainerPilot). */
export interface AgentService {
  readonly id: string;
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /** The check turns critical when no pass arrives within this many seconds. */
  readonly ttlSeconds: number;
  /** Consul removes the service once its check has been critical this long (Go duration, at least "1m"). */
  readonly deregisterAfter: string;
}

interface CheckRow {
  Node: string;
  ServiceID: string;
}

interface HealthRow {
  Node: { Node: string; Address: string };
  Service: {
    ID: string;
    Service: string;
    Address: string;
    Port: number;
    Tags: string[] | null;
    Meta: Record<string, string> | null;
  };
}

function toInstance(row: HealthRow): ServiceInstance {
  return Object.freeze({
    id: row.Service.ID,
    name: row.Service.Service,
    node: row.Node.Node,
    address: row.Service.Address || row.Node.Address,
    port: row.Service.Port,
    tags: Object.freeze([...(row.Service.Tags ?? [])]),
    meta: Object.freeze({ ...(row.Service.Meta ?? {}) }),
  });
}

function toEntry(
  item: { Key: string; Value: string | null; LockIndex: number; ModifyIndex: number; Session?: string },
): KvEntry {
  return Object.freeze({
    key: item.Key,
    value: item.Value ?? "",
    ...(item.Session ? { session: item.Session } : {}),
    lockIndex: item.LockIndex,
    modifyIndex: item.ModifyIndex,
  });
}

function translate(operation: string, e: unknown): Error {
  const err = e as PapiError;
  const status = err?.statusCode;
  const body = typeof err?.response?.body === "string" ? err.response.body.trim() : "";
  const detail = body || err?.message || String(e);
  if (status === undefined) {
    const code = err?.code ? `${err.code}: ` : "";
    return new ConsulUnavailableError(
      operation,
      `${code}${err?.message ?? String(e)}`.replace(/^(\w+): \1/, "$1"),
    );
  }
  if (status >= 500 && !/invalid session/i.test(detail)) {
    return new ConsulUnavailableError(operation, `HTTP ${status}: ${detail}`);
  }
  return new ConsulRequestError(operation, status, detail);
}

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
