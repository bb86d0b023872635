/**
 * Consul: sessions, locks, keys and health queries, over Consul's HTTP API with `fetch`.
 *
 * Nothing below the HTTP API leaves this module. A Consul that cannot be reached (refused, timed out, no
 * leader, 5xx) becomes {@link ConsulUnavailableError}; callers treat it as "Consul is down" (a primary then
 * fences itself). A lock held by someone else is a plain `false`, never an error; a session that no longer
 * exists is {@link SessionGoneError} from lock calls and `false` from {@link ConsulStore.renewSession}.
 *
 * Each request is bounded by CONSUL_TIMEOUT (an `AbortSignal`, which also covers reading the answer); the ACL
 * token travels in the `X-Consul-Token` header, never in a URL. Over `https`, every request goes through one
 * `Deno.HttpClient` that trusts CONSUL_CACERT (and presents CONSUL_CLIENT_CERT); a certificate that does not
 * check out is one line saying so ({@link transportFailure}), never a retry over plain HTTP. An ACL refusal is
 * {@link ConsulAclError}: one line naming the operation, what it was on and the permission the token lacks
 * (README, "Consul ACL policy"; src/consul_policy.ts writes the policy from the calls below). Connections are kept alive in fetch's pool;
 * `tests/integration/consul_test.ts` checks that a PUT on a pooled connection to a restarted Consul still goes
 * through. This used to be npm:consul over node:http; why it is not any more is in docs/DEVELOPING.md,
 * "The Consul client".
 *
 * @module
 */
import type { ConsulConfig, Secret } from "./config.ts";

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

/**
 * Consul refused a request for lack of an ACL permission (HTTP 403 "Permission denied", or a result it filtered
 * by ACLs), or did not know the token ("ACL not found"). Retrying does not fix it: the token must change.
 */
export class ConsulAclError extends ConsulRequestError {
  constructor(operation: string, status: number, message: string) {
    super(operation, status, message);
    this.name = "ConsulAclError";
    this.message = message;
  }
}

/** CONSUL_CACERT, CONSUL_CLIENT_CERT or CONSUL_CLIENT_KEY cannot be read or used. */
export class ConsulTlsSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConsulTlsSetupError";
  }
}

/** What a request was made on, for the line that says what Consul refused: `key "mysql-primary"`. */
export type Target = string;

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
   * How long Consul refuses to hand a lock to another session after this one is invalidated. None by default:
   * the in-server lease (src/mysql/lease.ts) is the guarantee, and a lock-delay only ever refused the rightful
   * retake by the last primary after Consul expired every session at once. @default 0
   */
  readonly lockDelaySeconds?: number;
  /** What happens to held keys when the session is invalidated. @default "release" */
  readonly behavior?: "release" | "delete";
}

/** What Consul answered: the status and the body, decoded by its content type (JSON, text, or nothing). */
interface Reply {
  readonly status: number;
  readonly body: unknown;
  /** What an answer other than 2xx says went wrong: Consul's text, else the status's name. */
  readonly reason: string;
  /** Consul left out of the answer what the token may not read (`X-Consul-Results-Filtered-By-ACLs`). */
  readonly filtered?: boolean;
}

/** A request's operation and what it is on: `["kv put", 'key "mysql-primary"']`. */
type Op = readonly [operation: string, on: Target];

/** A request's body: text (KV values) or a value sent as JSON. */
type RequestBody = { readonly text: string } | { readonly json: unknown };

/**
 * Consul operations autopilot needs, each named for what it does. Compare-and-set and lock operations say so
 * in their names and return whether they took effect.
 */
export class ConsulStore {
  readonly url: string;
  /** `scheme://host:port/v1` */
  readonly #api: string;
  readonly #token: Secret | undefined;
  readonly #timeoutMs: number;
  readonly #tls: TlsFiles;
  /** The HTTPS client (made on the first request over https, from the TLS files); `null`: plain fetch. */
  #client: Deno.HttpClient | null | undefined;

  /**
   * Creates a client for the configured agent. It connects lazily: constructing never touches the network.
   *
   * @param config The Consul settings (address, token, per-request timeout).
   */
  constructor(config: ConsulConfig) {
    this.url = config.url;
    this.#api = `${config.scheme}://${config.host}:${config.port}/v1`;
    this.#token = config.token;
    this.#timeoutMs = config.timeoutMs;
    this.#tls = tlsFiles(config);
  }

  // --- sessions -------------------------------------------------------------------------------

  /**
   * Creates a TTL session with no node or service checks (only the TTL invalidates it).
   *
   * @returns The session id.
   * @throws {ConsulUnavailableError} when Consul cannot be reached.
   */
  async createSession(options: SessionOptions): Promise<string> {
    const body = await this.#ok(["session create", "a session"], "PUT", "/session/create", undefined, {
      json: {
        LockDelay: `${options.lockDelaySeconds ?? 0}s`,
        Name: options.name,
        // An empty list means "no checks": the default would tie the session to serfHealth of this agent's node.
        Checks: [],
        Behavior: options.behavior ?? "release",
        TTL: `${options.ttlSeconds}s`,
      },
    }) as { ID?: unknown } | undefined;
    if (typeof body?.ID !== "string") {
      throw new ConsulUnavailableError("session create", "the answer names no session ID");
    }
    return body.ID;
  }

  /**
   * Renews a session's TTL.
   *
   * @returns `true` if renewed, `false` if the session no longer exists (create a new one).
   * @throws {ConsulUnavailableError} when Consul cannot be reached.
   */
  async renewSession(id: string): Promise<boolean> {
    const reply = await this.#send(
      ["session renew", `session ${id}`],
      "PUT",
      `/session/renew/${segment(id)}`,
    );
    if (reply.status === 404) return false;
    const body = okBody(["session renew", `session ${id}`], reply, this.#tokenSet);
    return Array.isArray(body) && body.length > 0;
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
    const body = await this.#ok(["session info", `session ${id}`], "GET", `/session/info/${segment(id)}`);
    return Array.isArray(body) && body.length > 0;
  }

  /** Destroys a session; held locks are released (with the session's lock-delay). Missing is fine. */
  async destroySession(id: string): Promise<void> {
    await this.#ok(["session destroy", `session ${id}`], "PUT", `/session/destroy/${segment(id)}`);
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
    return await this.#lockCall("lock acquire", sessionId, key, { acquire: sessionId }, value);
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
      Value: base64Text(value),
      Session: sessionId,
    };
    const op: Op = ["lock acquire", `key "${key}"`];
    const reply = await this.#send(op, "PUT", "/txn", undefined, {
      json: [{ KV: check }, { KV: lock }],
    });
    // Consul answers 409 with the failed operation's reason when a check or the lock fails.
    const errors = this.#txnErrors(op, reply);
    if (errors !== undefined) {
      if (errors.some((x) => /invalid session/i.test(x))) throw new SessionGoneError(sessionId);
      return false;
    }
    okBody(op, reply, this.#tokenSet);
    return true;
  }

  /**
   * Frees `key` from the session holding it, by anyone, only if the key is still as it was read: one Consul
   * transaction checks its ModifyIndex and unlocks it in the holder's name, leaving `value` in it. This is the
   * takeover of a stale primary lock (src/ha/takeover.ts). Consul 1.14's /txn takes no Session operation (it
   * answers 400 "unknown field Session"), so the holder's session is not destroyed: its lock is released, which
   * is all a takeover needs, atomically with the check.
   *
   * @param holder The session that held the key when it was read.
   * @param modifyIndex The key's ModifyIndex when read.
   * @returns `true` if the key was freed; `false` if it changed since it was read or another session holds it.
   */
  async unlockIfUnchanged(key: string, holder: string, value: string, modifyIndex: number): Promise<boolean> {
    const op: Op = ["lock takeover", `key "${key}"`];
    const reply = await this.#send(op, "PUT", "/txn", undefined, {
      json: [
        { KV: { Verb: "check-index", Key: key, Index: modifyIndex } },
        { KV: { Verb: "unlock", Key: key, Session: holder, Value: base64Text(value) } },
      ],
    });
    if (this.#txnErrors(op, reply) !== undefined) return false; // the check or the unlock failed: the key moved
    okBody(op, reply, this.#tokenSet);
    return true;
  }

  /**
   * Releases `key` if `sessionId` holds it. Consul writes the request body as the key's new value on release,
   * so pass the value to leave behind (e.g. the record of who held it last).
   *
   * @returns `true` if released, `false` if this session did not hold it.
   */
  async releaseLock(key: string, sessionId: string, value = ""): Promise<boolean> {
    return await this.#lockCall("lock release", sessionId, key, { release: sessionId }, value);
  }

  // --- keys -------------------------------------------------------------------------------------

  /** Reads a key; `undefined` if it does not exist. */
  async get(key: string): Promise<KvEntry | undefined> {
    const op: Op = ["kv get", `key "${key}"`];
    const reply = await this.#send(op, "GET", `/kv/${segment(key)}`);
    if (reply.status === 404) return undefined;
    const items = okBody(op, reply, this.#tokenSet);
    return Array.isArray(items) && items.length > 0 ? toEntry(items[0]) : undefined;
  }

  /**
   * Every key under a prefix (one request), e.g. all of `SERVICE_NAME-`.
   *
   * @throws {ConsulAclError} when Consul left out keys the token may not read (a view it filtered would look
   *   like a cluster without a primary): when it says it filtered, or when nothing came back and the token
   *   may not read the prefix itself.
   */
  async getPrefix(prefix: string): Promise<KvEntry[]> {
    const op: Op = ["kv get recurse", `the keys under "${prefix}"`];
    const reply = await this.#send(op, "GET", `/kv/${segment(prefix)}`, { recurse: "true" });
    refuseFiltered(op, reply, this.#tokenSet, `key_prefix "${prefix}" read`);
    if (reply.status === 404) {
      // Consul 1.14 answers a read it filtered down to nothing as a plain 404, without saying it filtered:
      // the prefix read as one key tells (403 when the token may not read there).
      const probe = await this.#send(op, "GET", `/kv/${segment(prefix)}`);
      if (probe.status !== 404) okBody(op, probe, this.#tokenSet);
      return [];
    }
    const items = okBody(op, reply, this.#tokenSet);
    return Array.isArray(items) ? items.map(toEntry) : [];
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
    await this.#ok(["kv put", `key "${key}"`], "PUT", `/kv/${segment(key)}`, undefined, { text: value });
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
    const query = { cas: String(modifyIndex) };
    return (await this.#ok(["kv cas", `key "${key}"`], "PUT", `/kv/${segment(key)}`, query, {
      text: value,
    })) ===
      true;
  }

  /** Compare-and-set for JSON values; see {@link ConsulStore.putIfUnchanged}. */
  async putJsonIfUnchanged(key: string, value: unknown, modifyIndex: number): Promise<boolean> {
    return await this.putIfUnchanged(key, JSON.stringify(value), modifyIndex);
  }

  /** Deletes a key (a missing key is fine). */
  async delete(key: string): Promise<void> {
    await this.#ok(["kv delete", `key "${key}"`], "DELETE", `/kv/${segment(key)}`);
  }

  // --- health -----------------------------------------------------------------------------------

  /**
   * The instances of a service whose every check passes (the same query ContainerPilot's watches make).
   *
   * @returns Instances sorted by id.
   */
  async passingInstances(service: string): Promise<ServiceInstance[]> {
    const op: Op = ["health service", `service "${service}"`];
    const reply = await this.#send(op, "GET", `/health/service/${segment(service)}`, { passing: "true" });
    refuseFiltered(op, reply, this.#tokenSet, `service "${service}" read and node_prefix "" read`);
    const rows = okBody(op, reply, this.#tokenSet);
    return (Array.isArray(rows) ? rows as HealthRow[] : []).map(toInstance)
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  /**
   * The checks of the whole catalog that are critical now (`/v1/health/state/critical`).
   *
   * @returns One entry a check, service checks only (node checks such as serfHealth are left out).
   */
  async criticalServiceChecks(): Promise<CriticalCheck[]> {
    // Consul leaves out the checks of services this token may not read: those are not this cluster's.
    const rows = await this.#ok(["health state", "the critical checks"], "GET", "/health/state/critical");
    return (Array.isArray(rows) ? rows as CheckRow[] : []).filter((r) => r.ServiceID).map((r) =>
      Object.freeze({ node: r.Node, serviceId: r.ServiceID })
    );
  }

  // --- agent services ---------------------------------------------------------------------------

  /**
   * Registers (or replaces) a service on the agent this client talks to, with one TTL check that starts
   * passing and that Consul removes, with the service, once it has been critical for `deregisterAfter`.
   */
  async registerService(service: AgentService): Promise<void> {
    await this.#ok(
      ["agent service register", `service "${service.name}"`],
      "PUT",
      "/agent/service/register",
      undefined,
      {
        json: {
          Name: service.name,
          ID: service.id,
          Address: service.address,
          Port: service.port,
          Check: {
            Name: `${service.name} TTL`,
            Notes: `TTL for ${service.name}, set by autopilot`,
            TTL: `${service.ttlSeconds}s`,
            Status: "passing",
            DeregisterCriticalServiceAfter: service.deregisterAfter,
          },
        },
      },
    );
  }

  /**
   * Marks a service's TTL check passing.
   *
   * @returns false when the agent does not know the check (never registered, or lost by the agent).
   */
  async passServiceCheck(serviceId: string): Promise<boolean> {
    try {
      await this.#ok(
        ["agent check pass", `the check of service id "${serviceId}"`],
        "PUT",
        `/agent/check/pass/${segment(`service:${serviceId}`)}`,
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
      await this.#ok(
        ["agent service deregister", `service id "${serviceId}"`],
        "PUT",
        `/agent/service/deregister/${segment(serviceId)}`,
      );
      return true;
    } catch (e) {
      const unknown = (e instanceof ConsulRequestError && e.status === 404) ||
        (e instanceof ConsulUnavailableError && /unknown service/i.test(e.message));
      if (!unknown) throw e;
    }
    if (node === undefined) return false;
    await this.#ok(
      ["catalog deregister", `service id "${serviceId}" of node ${node}`],
      "PUT",
      "/catalog/deregister",
      undefined,
      {
        json: { Node: node, ServiceID: serviceId },
      },
    );
    return true;
  }

  /**
   * Every registered instance of a service with the worst state of its checks, passing or not (what
   * `autopilot status` needs to say that a node's check is critical, warning or missing).
   *
   * @returns Instances sorted by id.
   */
  async serviceHealth(service: string): Promise<InstanceHealth[]> {
    const op: Op = ["health service", `service "${service}"`];
    const reply = await this.#send(op, "GET", `/health/service/${segment(service)}`);
    refuseFiltered(op, reply, this.#tokenSet, `service "${service}" read and node_prefix "" read`);
    const rows = okBody(op, reply, this.#tokenSet);
    return instancesFromHealthRows(Array.isArray(rows) ? rows as HealthServiceRow[] : []);
  }

  /**
   * Whether the agent this client talks to has a service with this id (`GET /v1/agent/service/ID`).
   */
  async hasAgentService(serviceId: string): Promise<boolean> {
    const op: Op = ["agent service", `service id "${serviceId}"`];
    const reply = await this.#send(op, "GET", `/agent/service/${segment(serviceId)}`);
    if (reply.status === 404) return false;
    okBody(op, reply, this.#tokenSet);
    return true;
  }

  /**
   * Registers a service on the agent with the body given as it is (the registration ContainerPilot sends,
   * src/services.ts).
   */
  async registerServiceAs(name: string, registration: Readonly<Record<string, unknown>>): Promise<void> {
    await this.#ok(
      ["agent service register", `service "${name}"`],
      "PUT",
      "/agent/service/register",
      undefined,
      {
        json: registration,
      },
    );
  }

  /**
   * Releases the HTTPS client, if one was made. Plain requests go through fetch's shared connection pool,
   * which the process owns.
   */
  close(): void {
    this.#client?.close();
    this.#client = undefined;
  }

  get #tokenSet(): boolean {
    return this.#token !== undefined;
  }

  /**
   * The reasons of a /txn answered 409 (a check, the lock or an unlock failed), or `undefined` for any other
   * answer.
   *
   * @throws {ConsulAclError} when one reason is an ACL refusal (Consul answers those as a 409 too).
   */
  #txnErrors(op: Op, reply: Reply): string[] | undefined {
    const errors = (reply.body as { Errors?: { What?: string }[] } | undefined)?.Errors;
    if (reply.status !== 409 || !Array.isArray(errors)) return undefined;
    const whats = errors.map((x) => x.What ?? "");
    const denied = whats.find((w) => /permission denied|acl not found/i.test(w));
    if (denied !== undefined) {
      throw new ConsulAclError(op[0], 403, aclRefusal(op, denied, this.#tokenSet));
    }
    return whats;
  }

  /** The HTTPS client, made on first use; `null` for plain fetch (http, or https with the system's CAs only). */
  async #httpClient(): Promise<Deno.HttpClient | null> {
    if (this.#client !== undefined) return this.#client;
    const tls = this.#tls;
    if (tls.scheme !== "https" || (tls.caFile ?? tls.clientCert) === undefined) return (this.#client = null);
    const read = async (variable: string, path: string | undefined) => {
      if (path === undefined) return undefined;
      try {
        return await Deno.readTextFile(path);
      } catch (e) {
        throw new ConsulTlsSetupError(unreadableTlsFile(variable, path, e));
      }
    };
    const options = httpClientOptions({
      ca: await read("CONSUL_CACERT", tls.caFile),
      cert: await read("CONSUL_CLIENT_CERT", tls.clientCert),
      key: await read("CONSUL_CLIENT_KEY", tls.clientKey),
    }, tls);
    try {
      this.#client = Deno.createHttpClient(options);
    } catch (e) {
      throw new ConsulTlsSetupError(
        `Cannot use ${
          tls.clientCert ? "CONSUL_CACERT / CONSUL_CLIENT_CERT / CONSUL_CLIENT_KEY" : "CONSUL_CACERT"
        }` +
          ` as PEM: ${firstLine((e as Error).message)}`,
      );
    }
    return this.#client;
  }

  /** A KV write that takes or releases a lock: `true` if it took effect. */
  async #lockCall(
    operation: string,
    sessionId: string,
    key: string,
    query: Readonly<Record<string, string>>,
    value: string,
  ): Promise<boolean> {
    try {
      return (await this.#ok([operation, `key "${key}"`], "PUT", `/kv/${segment(key)}`, query, {
        text: value,
      })) ===
        true;
    } catch (e) {
      // Consul answers 500 "invalid session" for a session that does not exist.
      if (
        (e instanceof ConsulRequestError || e instanceof ConsulUnavailableError) &&
        /invalid session/i.test(e.message)
      ) {
        throw new SessionGoneError(sessionId);
      }
      throw e;
    }
  }

  /** {@link ConsulStore.#send}, and the body of a 2xx answer; any other answer is an error. */
  async #ok(
    op: Op,
    method: "GET" | "PUT" | "DELETE",
    path: string,
    query?: Readonly<Record<string, string>>,
    body?: RequestBody,
  ): Promise<unknown> {
    return okBody(op, await this.#send(op, method, path, query, body), this.#tokenSet);
  }

  /**
   * One request, bounded by CONSUL_TIMEOUT (connecting, sending and reading the answer).
   *
   * @returns The status and the body (JSON decoded, text as it came, none as `undefined`), whatever the status.
   * @throws {ConsulUnavailableError} when no answer came, or one that cannot be read.
   */
  async #send(
    op: Op,
    method: "GET" | "PUT" | "DELETE",
    path: string,
    query?: Readonly<Record<string, string>>,
    body?: RequestBody,
  ): Promise<Reply> {
    const headers: Record<string, string> = {};
    if (this.#token) headers["X-Consul-Token"] = this.#token.reveal();
    let payload: string | undefined;
    if (body !== undefined) {
      const json = "json" in body;
      payload = json ? JSON.stringify(body.json) : body.text;
      headers["Content-Type"] = `${json ? "application/json" : "text/plain"}; charset=utf-8`;
    }
    const url = `${this.#api}${path}${query ? `?${new URLSearchParams(query)}` : ""}`;
    const [operation] = op;
    const client = await this.#httpClient();
    let res: Response;
    let text: string;
    try {
      // A redirect is not followed: the token would go wherever it points.
      res = await fetch(url, {
        method,
        headers,
        body: payload,
        redirect: "manual",
        signal: AbortSignal.timeout(this.#timeoutMs),
        ...(client ? { client } : {}),
      });
      text = await res.text();
    } catch (e) {
      const failure = transportFailure(e, this.#timeoutMs, this.url, this.#tls.caFile);
      throw new ConsulUnavailableError(operation, withClientCertHint(failure, this.#tls));
    }
    const { status } = res;
    const filtered = res.headers.get("x-consul-results-filtered-by-acls") === "true";
    const json = (res.headers.get("content-type") ?? "").split(";")[0].trim() === "application/json";
    const reason = (json ? "" : text.trim()) || res.statusText.toLowerCase() || `request failed: ${status}`;
    if (text === "" || !json) return { status, body: text === "" ? undefined : text, reason, filtered };
    try {
      return { status, body: JSON.parse(text), reason, filtered };
    } catch {
      throw new ConsulUnavailableError(
        operation,
        `HTTP ${status}, an answer that is not JSON: ${firstLine(text)}`,
      );
    }
  }
}

/**
 * A path segment as npm:consul wrote it (every reserved character escaped, `/` included: Consul decodes the
 * path before it reads the key).
 */
function segment(part: string): string {
  return encodeURIComponent(part);
}

/**
 * The body of a 2xx answer.
 *
 * @throws {ConsulUnavailableError} for a 5xx (Consul's own trouble: no leader, an RPC that failed), except
 *   "invalid session", which retrying does not fix.
 * @throws {ConsulRequestError} for any other answer (ACL denied, bad request, not found).
 */
function okBody(op: Op, reply: Reply, tokenSet: boolean): unknown {
  const { status, body, reason } = reply;
  const [operation] = op;
  if (status >= 200 && status <= 299) return body;
  if (status >= 500 && !/invalid session/i.test(reason)) {
    if (/permission denied|acl not found/i.test(reason)) {
      throw new ConsulAclError(operation, status, aclRefusal(op, reason, tokenSet));
    }
    throw new ConsulUnavailableError(operation, `HTTP ${status}: ${reason}`);
  }
  if (status === 403 || /permission denied|acl not found/i.test(reason)) {
    throw new ConsulAclError(operation, status, aclRefusal(op, reason, tokenSet));
  }
  throw new ConsulRequestError(operation, status, reason);
}

/**
 * Refuses an answer Consul filtered by ACLs: what is left out is what the token may not read.
 *
 * @param rule The rule of the policy that gives that read.
 */
function refuseFiltered(op: Op, reply: Reply, tokenSet: boolean, rule: string): void {
  // All left out is a 404 with the header, some left out a 200 with it.
  if (!reply.filtered || !(reply.status === 404 || (reply.status >= 200 && reply.status <= 299))) return;
  throw new ConsulAclError(
    op[0],
    reply.status,
    aclRefusal(op, `Consul left out what the token may not read (it needs ${rule})`, tokenSet),
  );
}

/** The policy rule that grants `resource:level`, as README's policy writes it. */
const RULES: Readonly<Record<string, string>> = {
  key: "key_prefix",
  session: "session_prefix",
  service: "service",
  node: "node_prefix",
  agent: "agent_prefix",
  operator: "operator",
};

/**
 * The one line for an ACL refusal: the operation, what it was on, and what the token lacks, from Consul's
 * reason (1.14 names the permission: `Permission denied: token with AccessorID '…' lacks permission
 * 'key:write' on "mysql-primary"`). Pure.
 *
 * @param tokenSet Whether a token was sent (CONSUL_HTTP_TOKEN set); without one Consul uses its anonymous token.
 */
export function aclRefusal(op: Op, reason: string, tokenSet: boolean): string {
  const [operation, on] = op;
  const head = `Consul refused ${operation} on ${on}`;
  const see = `give the token the policy in README, "Consul ACL policy"`;
  if (/acl not found/i.test(reason)) {
    return `${head}: Consul does not know the token in CONSUL_HTTP_TOKEN (ACL not found): set it to a token ` +
      `Consul has, with the policy in README, "Consul ACL policy"`;
  }
  const who = tokenSet
    ? "the token in CONSUL_HTTP_TOKEN"
    : "no token was sent (CONSUL_HTTP_TOKEN is unset) and the anonymous token";
  const m = /lacks permission '(\w+):(\w+)'(?: on "?([^"]*)"?)?/.exec(reason);
  if (m) {
    const [, resource, level, name] = m;
    const rule = RULES[resource] ?? resource;
    const where = name !== undefined && name !== "" ? ` on "${name}"` : "";
    return `${head}: ${who} lacks ${resource}:${level}${where} (a ${rule} rule with policy = "${level}"); ${see}`;
  }
  const detail = firstLine(reason.replace(/^permission denied:?\s*/i, ""));
  return `${head}: ${who} is not allowed to${detail ? ` (${detail})` : ""}; ${see}`;
}

/** Node's names for the socket errors a request to Consul meets, by Linux errno. */
const ERRNO_CODES: Readonly<Record<string, string>> = {
  "32": "EPIPE",
  "101": "ENETUNREACH",
  "104": "ECONNRESET",
  "110": "ETIMEDOUT",
  "111": "ECONNREFUSED",
  "113": "EHOSTUNREACH",
};

/**
 * Why a request got no answer, as one line that starts with a code where there is one (`ECONNREFUSED: …`):
 * fetch's own text names the URL and the layers it went through, which says less than the code does.
 */
export function transportFailure(e: unknown, timeoutMs: number, url = "Consul", caFile?: string): string {
  if (e instanceof DOMException && e.name === "TimeoutError") {
    return `ETIMEDOUT: no answer within ${timeoutMs} ms (CONSUL_TIMEOUT)`;
  }
  const err = e as Error;
  const cause = err?.cause instanceof Error ? err.cause.message : "";
  const text = (cause || err?.message || String(e))
    .replace(/^error sending request\b.*?\): /, "")
    .replace(/^client error \(\w+\): /, "");
  const tls = tlsFailure(text, url, caFile);
  if (tls !== undefined) return tls;
  const errno = /\(os error (\d+)\)/.exec(text)?.[1];
  const code = errno !== undefined
    ? ERRNO_CODES[errno]
    : /dns error|failed to lookup address/i.test(text)
    ? "ENOTFOUND"
    : /connection closed before message completed|error reading a body|connection reset/i.test(text)
    ? "ECONNRESET"
    : undefined;
  return code ? `${code}: ${firstLine(text)}` : firstLine(text);
}

/**
 * A TLS failure as one line saying what to do, or `undefined` when `text` is not one. rustls names the
 * certificate's fault (`invalid peer certificate: UnknownIssuer`).
 */
export function tlsFailure(text: string, url: string, caFile?: string): string | undefined {
  const cert = /invalid peer certificate:\s*([^\s,)]+(?:\([^)]*\))?)/i.exec(text)?.[1];
  if (cert !== undefined) {
    const fix = /UnknownIssuer|BadSignature|UnknownRevocationStatus|CaUsedAsEndEntity/i.test(cert)
      ? caFile === undefined
        ? "set CONSUL_CACERT to the PEM file of the CA that signed it"
        : `CONSUL_CACERT (${caFile}) is not the CA that signed it: set it to the PEM file of the one that did`
      : /NotValidForName|NotValid.*Name/i.test(cert)
      ? "the certificate does not name the host in CONSUL: use a name or address it was issued for"
      : /Expired|NotValidYet/i.test(cert)
      ? "the certificate is outside its validity period: renew it"
      : "check the certificate Consul presents";
    return `TLS: the certificate ${url} presented is not trusted (${cert}): ${fix}`;
  }
  const alert = /received fatal alert:\s*(\w+)/i.exec(text)?.[1];
  if (alert !== undefined && /CertificateRequired|BadCertificate|UnknownCA|AccessDenied/i.test(alert)) {
    return `TLS: ${url} refused this client's certificate (${alert}): it verifies its clients, so set ` +
      "CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY to a certificate signed by a CA it trusts";
  }
  if (/certificate|handshake|tls|ssl/i.test(text) && !/os error/i.test(text)) {
    return `TLS: cannot make a TLS connection to ${url} (${
      firstLine(text)
    }): check CONSUL's scheme and port, ` +
      "CONSUL_CACERT and CONSUL_CLIENT_CERT";
  }
  return undefined;
}

/**
 * Over TLS 1.3 a Consul that wants a client certificate may refuse it after the handshake, so the client sees
 * only its connection closed: when none was configured, the line says what may be missing.
 */
export function withClientCertHint(failure: string, tls: TlsFiles): string {
  if (tls.scheme !== "https" || tls.clientCert !== undefined) return failure;
  if (!/connection (closed|reset)|stream closed|broken pipe/i.test(failure)) return failure;
  return `${failure} (if Consul verifies its clients, set CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY)`;
}

/** The TLS settings a {@link ConsulStore} reads its files from. */
export interface TlsFiles {
  readonly scheme: "http" | "https";
  readonly host: string;
  readonly caFile?: string;
  readonly clientCert?: string;
  readonly clientKey?: string;
}

function tlsFiles(config: ConsulConfig): TlsFiles {
  return Object.freeze({
    scheme: config.scheme,
    host: config.host,
    ...(config.caFile ? { caFile: config.caFile } : {}),
    ...(config.clientCert ? { clientCert: config.clientCert } : {}),
    ...(config.clientKey ? { clientKey: config.clientKey } : {}),
  });
}

/**
 * The directories a Consul TLS file may be in: those `deno.json`'s `autopilot` permission set lets the program
 * read, the same as `SECRET_FILE_DIRS` in `src/config.ts` (a unit test keeps them equal; not imported from there,
 * since a health pass loads `src/config.ts`'s types only).
 */
export const CONSUL_TLS_FILE_DIRS: readonly string[] = Object.freeze([
  "/run/secrets",
  "/var/lib/autopilot",
  "/var/lib/mysql",
  "/tmp",
]);

/**
 * Why a Consul TLS file (`variable` names it) cannot be read, in one line naming the variable and the path:
 * for a path outside the directories the permission set lets autopilot read, those directories
 * ({@link CONSUL_TLS_FILE_DIRS}), never Deno's "run again with the --allow-read flag". Pure.
 */
export function unreadableTlsFile(variable: string, path: string, e: unknown): string {
  const why = e instanceof Deno.errors.NotFound
    ? "does not exist"
    : e instanceof Deno.errors.NotCapable
    ? `is outside the directories autopilot may read (${
      CONSUL_TLS_FILE_DIRS.join(", ")
    }): put it in one of them`
    : e instanceof Deno.errors.PermissionDenied
    ? "cannot be read (permission denied: check the file's owner and mode)"
    : e instanceof Deno.errors.IsADirectory
    ? "is a directory, not a PEM file"
    : `cannot be read (${e instanceof Error ? e.message : String(e)})`;
  return `${variable} ${path} ${why}`;
}

/**
 * The options of the HTTPS client, from the TLS files' contents: the CA added to the roots Deno trusts, the
 * client certificate and key when both are given. Pure.
 */
export function httpClientOptions(
  pem: { readonly ca?: string; readonly cert?: string; readonly key?: string },
  tls: TlsFiles,
): Deno.CreateHttpClientOptions & { cert?: string; key?: string } {
  if (tls.scheme !== "https") {
    throw new ConsulTlsSetupError("CONSUL_CACERT and CONSUL_CLIENT_CERT need CONSUL=https://host:port");
  }
  return {
    ...(pem.ca !== undefined ? { caCerts: [pem.ca] } : {}),
    ...(pem.cert !== undefined && pem.key !== undefined ? { cert: pem.cert, key: pem.key } : {}),
  };
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

/** One KV entry as Consul lists it, its value base64-encoded (null for an empty value). */
interface KvRow {
  Key: string;
  Value: string | null;
  LockIndex: number;
  ModifyIndex: number;
  Session?: string;
}

function toEntry(item: KvRow): KvEntry {
  return Object.freeze({
    key: item.Key,
    value: typeof item.Value === "string" ? decodeBase64Text(item.Value) : "",
    ...(item.Session ? { session: item.Session } : {}),
    lockIndex: item.LockIndex,
    modifyIndex: item.ModifyIndex,
  });
}

/** UTF-8 text as a base64 value (what /txn takes). */
function base64Text(text: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

/** A base64 value as UTF-8 text (malformed sequences become U+FFFD). */
function decodeBase64Text(value: string): string {
  const binary = atob(value);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder().decode(bytes);
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
