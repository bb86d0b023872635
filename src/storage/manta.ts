/**
 * The Manta store: snapshots are objects in a Manta directory (MANTA_BUCKET, e.g. `/acct/stor/mysql`), spoken
 * to over Manta's Directory API (PutObject, PutDirectory, GetObject, ListDirectory, DeleteObject) with the
 * HTTP Signature authentication Manta documents: every request carries a fresh `date` header and
 * `Authorization: Signature keyId="/user[/subuser]/keys/<MD5 fingerprint>",algorithm="rsa-sha256",
 * headers="date",signature="..."`, signed with the private key from the environment (never an SSH agent or a
 * key file).
 *
 * Why not npm:manta (node-manta 5.4.2, the planned client): it works under Deno with `-A`, but it cannot run
 * under the `autopilot` permission set. Deno 2.9 throws NotCapable for every environment variable outside the
 * allow list, and node-manta and its dependencies read many at import or per request: `OPENSSL_CONF` (and
 * writes it) in `lib/index.js`, `MANTA_DEFAULT_CONTENT_TYPE` and `MANTA_SKIP_URLENCODE` (on every path) in
 * `lib/client.js`, `https_proxy`/`HTTP_PROXY`/`NO_PROXY` in restify-clients, `NODE_NDEBUG` in assert-plus
 * (which sshpk needs too), `BUNYAN_TEST_NO_SAFE_JSON_STRINGIFY` in bunyan. Only adding those names to the
 * permission set, or `"env": {"allow": [...], "ignore": true}`, would make it load. It also streams uploads
 * through `pipe()` after `Expect: 100-continue`, so a failing source leaves the request open instead of
 * aborting it. This module therefore signs the requests itself (node:crypto) and sends them with node:http(s)
 * (not fetch: Deno's fetch cannot skip certificate checks per client, which MANTA_TLS_INSECURE needs).
 *
 * Atomic uploads: PutObject streams (chunked, never buffered) straight to the final name. Manta records an
 * object's metadata only after every byte has reached the storage nodes (muskie: "stream bytes, then save
 * metadata"), so an upload that does not finish leaves the old object or nothing; mantav2 has no rename and
 * no SnapLinks, so a temporary name could not be moved into place anyway. When the source stream fails the
 * request is destroyed mid-body (no final chunk is ever sent), which Manta treats as a failed upload.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash, createPrivateKey, createPublicKey, type Hash, type KeyObject, sign } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { getLogger } from "@logtape/logtape";
import type { MantaConfig } from "../config.ts";
import {
  checkKey,
  NotFoundError,
  type ObjectInfo,
  type PutOptions,
  type SnapshotStore,
  StoreUnavailableError,
  withAbort,
  withIdleTimeout,
} from "./store.ts";

const log = getLogger(["autopilot", "storage", "manta"]);

/** How long to wait for a connection and the response head (not for a body in progress). */
const RESPONSE_TIMEOUT_MS = 30_000;
/** Entries per ListDirectory page (Manta's maximum). */
const PAGE = 1000;

/** A {@link SnapshotStore} on a Manta directory. */
export class MantaStore implements SnapshotStore {
  readonly kind = "manta";
  readonly location: string;
  readonly #url: URL;
  readonly #dir: string;
  readonly #signer: RequestSigner;
  readonly #role: string | undefined;
  readonly #insecure: boolean;
  /** Directories known to exist (created or confirmed by this store). */
  readonly #dirs = new Set<string>();

  /**
   * @throws {StoreUnavailableError} when the private key cannot be read or MANTA_KEY_ID is not its fingerprint.
   */
  constructor(config: MantaConfig) {
    this.#url = new URL(config.url.replace(/\/+$/, ""));
    this.#dir = `/${config.bucket.split("/").filter((s) => s !== "").join("/")}`;
    this.location = `${this.#url.origin}${this.#dir}`;
    this.#signer = new RequestSigner(config);
    this.#role = config.role;
    this.#insecure = config.tlsInsecure;
    this.#dirs.add(this.#dir);
  }

  async put(
    key: string,
    body: ReadableStream<Uint8Array>,
    signal?: AbortSignal,
    opts: PutOptions = {},
  ): Promise<ObjectInfo> {
    checkKey(key);
    const parts = key.split("/");
    for (let i = 1; i < parts.length; i++) await this.#mkdir(parts.slice(0, i).join("/"));
    let size = 0;
    const md5 = createHash("md5");
    const counted = body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, c) {
          size += chunk.byteLength;
          md5.update(chunk);
          c.enqueue(chunk);
        },
      }),
    );
    const res = await this.#request("PUT", this.#path(key), {
      headers: {
        "content-type": "application/octet-stream",
        accept: "application/json",
        // a streamed object may not exceed this (Manta's default without it is 5 GB)
        ...(opts.maxBytes !== undefined ? { "max-content-length": String(Math.ceil(opts.maxBytes)) } : {}),
      },
      body: counted,
      signal,
    });
    if (res.statusCode === 413) {
      const { code, message } = await readError(res);
      throw new StoreUnavailableError(
        `Manta at ${this.#url.origin} refused '${key}' after ${size} bytes as too large (HTTP 413` +
          `${code ? ` ${code}` : ""}${message ? `: ${message}` : ""}): ` +
          (opts.maxBytes === undefined
            ? "streamed objects are limited to 5 GB unless the upload says how big it may get"
            : `the upload allowed up to ${Math.ceil(opts.maxBytes)} bytes`),
      );
    }
    await this.#expectOk(res, "store", key);
    const mine = md5.digest("base64");
    const theirs = res.headers["computed-md5"];
    if (typeof theirs === "string" && theirs !== mine) {
      await this.delete([key]).catch(() => {});
      throw new StoreUnavailableError(
        `Manta stored '${key}' with MD5 ${theirs} but ${mine} was sent: the upload was corrupted on the way ` +
          "and has been deleted; take the snapshot again",
      );
    }
    const modified = res.headers["last-modified"];
    return { key, size, modified: modified ? new Date(modified) : new Date() };
  }

  async get(key: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    checkKey(key);
    const res = await this.#request("GET", this.#path(key), { headers: { accept: "*/*" }, signal });
    if (res.statusCode === 404) {
      await drain(res);
      throw new NotFoundError(this.kind, key);
    }
    if (res.statusCode === 200 && /;\s*type=directory/.test(String(res.headers["content-type"] ?? ""))) {
      res.destroy(); // a directory's listing: no object (list() never shows one)
      throw new NotFoundError(this.kind, key);
    }
    await this.#expectOk(res, "read", key);
    const length = res.headers["content-length"] ? Number(res.headers["content-length"]) : undefined;
    const expected = res.headers["content-md5"];
    return withIdleTimeout(
      withAbort(ReadableStream.from(res as AsyncIterable<Uint8Array>), signal),
      `reading '${key}' from Manta`,
    )
      .pipeThrough(verifying(key, length, typeof expected === "string" ? expected : undefined));
  }

  async *list(prefix = ""): AsyncIterable<ObjectInfo> {
    yield* this.#walk("", prefix);
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      checkKey(key);
      const res = await this.#request("DELETE", this.#path(key), { headers: { accept: "application/json" } });
      if (res.statusCode === 404) {
        await drain(res);
        continue;
      }
      // A directory is no object: one that holds others is left alone, an empty one goes.
      await this.#expectOk(res, "delete", key, (code) => code === "DirectoryNotEmpty");
      this.#dirs.delete(this.#path(key));
    }
  }

  async *#walk(dir: string, prefix: string): AsyncIterable<ObjectInfo> {
    const path = dir === "" ? this.#dir : `${this.#dir}/${dir}`;
    let marker = "";
    for (;;) {
      const res = await this.#request("GET", path, {
        headers: { accept: "application/x-json-stream" },
        query: { limit: String(PAGE), ...(marker ? { marker } : {}) },
      });
      if (res.statusCode === 404 && dir !== "") {
        await drain(res); // removed while we walked
        return;
      }
      await this.#expectOk(res, "list", dir === "" ? "" : `${dir}/`);
      const entries = await readEntries(res);
      for (const entry of entries) {
        if (entry.name === marker) continue; // a page starts at its marker
        const key = dir === "" ? entry.name : `${dir}/${entry.name}`;
        if (entry.type === "directory") {
          if (prefix === "" || prefix.startsWith(`${key}/`) || key.startsWith(prefix)) {
            yield* this.#walk(key, prefix);
          }
        } else if (entry.type === "object" && key.startsWith(prefix)) {
          yield { key, size: entry.size ?? 0, modified: new Date(entry.mtime ?? 0) };
        }
      }
      if (entries.length < PAGE) return;
      marker = entries[entries.length - 1].name;
    }
  }

  /** PutDirectory (idempotent) for `dir` below the store's directory, which must exist. */
  async #mkdir(dir: string): Promise<void> {
    const path = `${this.#dir}/${dir}`;
    if (this.#dirs.has(path)) return;
    const res = await this.#request("PUT", path, {
      headers: { "content-type": "application/json; type=directory", accept: "application/json" },
    });
    await this.#expectOk(res, "create directory", `${dir}/`);
    this.#dirs.add(path);
  }

  /**
   * Throws the right error for a non-2xx answer (consuming its body) unless its error code is one `accept`s;
   * 2xx answers pass.
   */
  async #expectOk(
    res: http.IncomingMessage,
    action: string,
    key: string,
    accept: (code: string | undefined) => boolean = () => false,
  ): Promise<void> {
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return;
    const { code, message } = await readError(res);
    if (accept(code)) return;
    const detail = `HTTP ${status}${code ? ` ${code}` : ""}${message ? `: ${message}` : ""}`;
    if (status === 401 || status === 403) {
      throw new StoreUnavailableError(
        `Manta at ${this.#url.origin} refused ${this.#signer.keyId} (${detail}): check MANTA_USER, ` +
          "MANTA_SUBUSER, MANTA_ROLE, MANTA_KEY_ID and that this key is registered with the account",
      );
    }
    if (status === 404 && /DirectoryDoesNotExist|ResourceNotFound|ParentNotDirectory/.test(code ?? "")) {
      throw new StoreUnavailableError(
        `Manta directory ${this.#dir} does not exist on ${this.#url.origin} (${detail}): create it ` +
          `(mmkdir -p ${this.#dir}) or fix MANTA_BUCKET`,
      );
    }
    throw new StoreUnavailableError(
      `Manta at ${this.#url.origin} could not ${action} '${key}' in ${this.#dir} (${detail})`,
    );
  }

  #path(key: string): string {
    return `${this.#dir}/${key}`;
  }

  /**
   * Sends one signed request. With a body, it is streamed chunk by chunk (respecting backpressure); if the body
   * fails, the request is destroyed mid-body and the body's error is thrown.
   */
  #request(
    method: string,
    path: string,
    opts: {
      headers: Record<string, string>;
      query?: Record<string, string>;
      body?: ReadableStream<Uint8Array>;
      signal?: AbortSignal;
    },
  ): Promise<http.IncomingMessage> {
    const url = new URL(this.#url.href);
    url.pathname = `${url.pathname.replace(/\/$/, "")}${path.split("/").map(encodeURIComponent).join("/")}`;
    for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v);
    const date = new Date().toUTCString();
    const headers: Record<string, string> = {
      ...opts.headers,
      date,
      authorization: this.#signer.authorization(date),
      ...(this.#role ? { role: this.#role } : {}),
    };
    const tls = url.protocol === "https:";
    log.debug("{method} {path}", { method, path });
    return new Promise<http.IncomingMessage>((resolve, reject) => {
      let settled = false;
      let responded = false;
      let body: ReadableStreamDefaultReader<Uint8Array> | undefined;
      const fail = (e: unknown) => {
        if (settled) return;
        settled = true;
        reject(e);
        req.destroy();
        // Stop the source too: it may be waiting for us to read, and we never will.
        body?.cancel(e).catch(() => {});
      };
      const req = (tls ? https : http).request(url, {
        method,
        headers,
        agent: false,
        ...(tls ? { rejectUnauthorized: !this.#insecure } : {}),
      });
      // The timer covers connecting and waiting for the answer, never a body upload in progress (a backup
      // tool may pause its output for a long time).
      let timer: ReturnType<typeof setTimeout> | undefined;
      const arm = () => {
        timer = setTimeout(
          () => fail(new StoreUnavailableError(`Cannot reach Manta at ${url.origin}: no answer within 30 s`)),
          RESPONSE_TIMEOUT_MS,
        );
      };
      const onAbort = () => fail(opts.signal?.reason ?? new DOMException("aborted", "AbortError"));
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      const cleanup = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
      };
      req.on("response", (res) => {
        responded = true;
        cleanup();
        if (settled) {
          res.resume();
          return;
        }
        settled = true;
        resolve(res);
      });
      req.on("error", (e: Error & { code?: string }) => {
        cleanup();
        fail(new StoreUnavailableError(`Cannot reach Manta at ${url.origin}: ${e.code ?? e.message}`));
      });
      if (opts.signal?.aborted) return onAbort();
      if (opts.body === undefined) {
        arm();
        req.end();
        return;
      }
      const responseArrived = new Promise<void>((r) => req.once("response", () => r()));
      // A request destroyed by an abort or a failure never drains: stop waiting when it closes.
      const closed = new Promise<void>((r) => req.once("close", () => r()));
      (async () => {
        const reader = body = opts.body!.getReader();
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (settled && !responded) return; // failed: fail() cancelled the source
            if (done) break;
            if (responded || settled) {
              await reader.cancel().catch(() => {});
              return;
            }
            if (!req.write(value)) {
              await Promise.race([new Promise((r) => req.once("drain", r)), responseArrived, closed]);
            }
          }
          req.end();
          if (!responded) arm();
        } catch (e) {
          // The source failed: abort mid-body so Manta never commits the object.
          cleanup();
          fail(e);
        }
      })();
    });
  }
}

/** One ListDirectory entry. */
interface DirEntry {
  readonly name: string;
  readonly type: "object" | "directory";
  readonly size?: number;
  readonly mtime?: string;
}

async function readEntries(res: http.IncomingMessage): Promise<DirEntry[]> {
  const text = await readText(res, 64 * 1024 * 1024);
  return text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as DirEntry);
}

async function readError(res: http.IncomingMessage): Promise<{ code?: string; message?: string }> {
  const text = await readText(res, 64 * 1024).catch(() => "");
  try {
    const body = JSON.parse(text) as { code?: unknown; message?: unknown };
    return {
      ...(typeof body.code === "string" ? { code: body.code } : {}),
      ...(typeof body.message === "string" ? { message: body.message.split("\n")[0].slice(0, 300) } : {}),
    };
  } catch {
    return {};
  }
}

async function readText(res: http.IncomingMessage, limit: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res as AsyncIterable<Uint8Array>) {
    total += chunk.byteLength;
    if (total > limit) {
      res.destroy();
      throw new Error(`answer longer than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function drain(res: http.IncomingMessage): Promise<void> {
  await readText(res, 1024 * 1024).catch(() => "");
}

/** Passes an object's bytes through, failing the stream if it is shorter than announced or its MD5 differs. */
function verifying(
  key: string,
  length: number | undefined,
  md5: string | undefined,
): TransformStream<Uint8Array, Uint8Array> {
  let seen = 0;
  const hash: Hash = createHash("md5");
  return new TransformStream({
    transform(chunk, c) {
      seen += chunk.byteLength;
      hash.update(chunk);
      c.enqueue(chunk);
    },
    flush(c) {
      if (length !== undefined && seen !== length) {
        c.error(new StoreUnavailableError(`Manta sent ${seen} of the ${length} bytes of '${key}'`));
        return;
      }
      const got = hash.digest("base64");
      if (md5 !== undefined && got !== md5) {
        c.error(new StoreUnavailableError(`'${key}' read from Manta has MD5 ${got}, not ${md5}: corrupt`));
      }
    },
  });
}

/** Signs requests with the account's private key, as Manta's HTTP Signature scheme wants. */
class RequestSigner {
  /** `/user[/subuser]/keys/<md5 fingerprint>`. */
  readonly keyId: string;
  readonly #key: KeyObject;
  readonly #algorithm: string;
  readonly #hash: string | null;

  constructor(config: MantaConfig) {
    let key: KeyObject;
    try {
      key = readPrivateKey(config.privateKey.reveal());
    } catch (e) {
      throw new StoreUnavailableError(
        `MANTA_PRIVATE_KEY cannot be used: ${
          e instanceof KeyFormatError ? e.message : "it is not an RSA, ECDSA or Ed25519 private key"
        } (scripts/setup.sh copies a key file for MANTA_PRIVATE_KEY_FILE)`,
      );
    }
    const pub = createPublicKey(key);
    const fingerprints = sshFingerprints(pub);
    const wanted = config.keyId.trim();
    if (
      wanted.replace(/^MD5:/i, "").toLowerCase() !== fingerprints.md5 && wanted !== fingerprints.sha256
    ) {
      throw new StoreUnavailableError(
        `MANTA_KEY_ID ${wanted} is not the fingerprint of MANTA_PRIVATE_KEY (${fingerprints.md5}): ` +
          "set MANTA_KEY_ID to it or run scripts/setup.sh again",
      );
    }
    const user = config.subuser ? `${config.user}/${config.subuser}` : config.user;
    this.keyId = `/${user}/keys/${fingerprints.md5}`;
    this.#key = key;
    const type = key.asymmetricKeyType;
    if (type === "rsa") {
      [this.#algorithm, this.#hash] = ["rsa-sha256", "sha256"];
    } else if (type === "ed25519") {
      [this.#algorithm, this.#hash] = ["ed25519-sha512", null];
    } else {
      const bits =
        { "P-256": "256", "P-384": "384", "P-521": "512" }[String(pub.export({ format: "jwk" }).crv)];
      [this.#algorithm, this.#hash] = [`ecdsa-sha${bits}`, `sha${bits}`];
    }
  }

  /** The Authorization header for a request whose `date` header is `date`. */
  authorization(date: string): string {
    const signature = sign(this.#hash, Buffer.from(`date: ${date}`), this.#key).toString("base64");
    return `Signature keyId="${this.keyId}",algorithm="${this.#algorithm}",headers="date",signature="${signature}"`;
  }
}

/** A key the parser understands but cannot use; its message says why, without key material. */
class KeyFormatError extends Error {}

/**
 * Reads a private key: PEM (PKCS#1, PKCS#8, SEC1) through node:crypto, or the OpenSSH format
 * (`-----BEGIN OPENSSH PRIVATE KEY-----`, what ssh-keygen writes by default) unencrypted.
 */
export function readPrivateKey(text: string): KeyObject {
  const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (!m) {
    if (/ENCRYPTED/.test(text)) {
      throw new KeyFormatError("it is encrypted with a passphrase; use an unencrypted key");
    }
    const key = createPrivateKey({ key: text, format: "pem" });
    if (!["rsa", "ed25519", "ec"].includes(key.asymmetricKeyType ?? "")) {
      throw new KeyFormatError(`${key.asymmetricKeyType} keys are not supported; use RSA, ECDSA or Ed25519`);
    }
    return key;
  }
  const r = new SshReader(Buffer.from(m[1].replace(/\s+/g, ""), "base64"));
  const magic = "openssh-key-v1\0";
  if (r.raw(magic.length).toString("latin1") !== magic) {
    throw new KeyFormatError("its OpenSSH header is wrong");
  }
  if (r.string().toString() !== "none") {
    throw new KeyFormatError("it is encrypted with a passphrase; use an unencrypted key");
  }
  r.string(); // kdf name
  r.string(); // kdf options
  if (r.uint32() !== 1) throw new KeyFormatError("it holds more than one key");
  r.string(); // public key
  const p = new SshReader(r.string());
  if (p.uint32() !== p.uint32()) throw new KeyFormatError("its check bytes differ (damaged key)");
  const type = p.string().toString();
  const b64u = (b: Buffer) => b.toString("base64url");
  if (type === "ssh-rsa") {
    const [n, e, d, iqmp, pp, q] = [p.mpint(), p.mpint(), p.mpint(), p.mpint(), p.mpint(), p.mpint()];
    const big = (b: Buffer) => BigInt(`0x${b.toString("hex") || "0"}`);
    const buf = (v: bigint) => {
      const hex = v.toString(16);
      return Buffer.from(hex.length % 2 ? `0${hex}` : hex, "hex");
    };
    const dp = big(d) % (big(pp) - 1n);
    const dq = big(d) % (big(q) - 1n);
    return createPrivateKey({
      key: {
        kty: "RSA",
        n: b64u(n),
        e: b64u(e),
        d: b64u(d),
        p: b64u(pp),
        q: b64u(q),
        dp: b64u(buf(dp)),
        dq: b64u(buf(dq)),
        qi: b64u(iqmp),
      },
      format: "jwk",
    });
  }
  if (type === "ssh-ed25519") {
    const pub = p.string();
    const priv = p.string();
    return createPrivateKey({
      key: { kty: "OKP", crv: "Ed25519", x: b64u(pub), d: b64u(priv.subarray(0, 32)) },
      format: "jwk",
    });
  }
  const curve =
    { "ecdsa-sha2-nistp256": "P-256", "ecdsa-sha2-nistp384": "P-384", "ecdsa-sha2-nistp521": "P-521" }[
      type
    ];
  if (curve) {
    p.string(); // curve name
    const point = p.string();
    const size = (point.length - 1) / 2;
    const d = p.mpint();
    const dFixed = Buffer.concat([Buffer.alloc(Math.max(0, size - d.length)), d.subarray(-size)]);
    return createPrivateKey({
      key: {
        kty: "EC",
        crv: curve,
        x: b64u(point.subarray(1, 1 + size)),
        y: b64u(point.subarray(1 + size)),
        d: b64u(dFixed),
      },
      format: "jwk",
    });
  }
  throw new KeyFormatError(`${type} keys are not supported; use RSA, ECDSA or Ed25519`);
}

/** The MD5 (`aa:bb:...`) and SHA256 (`SHA256:base64`) fingerprints of a public key, as ssh-keygen prints them. */
export function sshFingerprints(pub: KeyObject): { md5: string; sha256: string } {
  const jwk = pub.export({ format: "jwk" });
  const str = (b: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const mpint = (b64url: string) => {
    let b = Buffer.from(b64url, "base64url");
    while (b.length > 1 && b[0] === 0 && (b[1] & 0x80) === 0) b = b.subarray(1);
    return str((b[0] & 0x80) ? Buffer.concat([Buffer.from([0]), b]) : b);
  };
  let blob: Buffer;
  if (jwk.kty === "RSA") {
    blob = Buffer.concat([str(Buffer.from("ssh-rsa")), mpint(jwk.e!), mpint(jwk.n!)]);
  } else if (jwk.kty === "OKP") {
    blob = Buffer.concat([str(Buffer.from("ssh-ed25519")), str(Buffer.from(jwk.x!, "base64url"))]);
  } else {
    const name = { "P-256": "nistp256", "P-384": "nistp384", "P-521": "nistp521" }[String(jwk.crv)] ?? "";
    const point = Buffer.concat([
      Buffer.from([4]),
      Buffer.from(jwk.x!, "base64url"),
      Buffer.from(jwk.y!, "base64url"),
    ]);
    blob = Buffer.concat([str(Buffer.from(`ecdsa-sha2-${name}`)), str(Buffer.from(name)), str(point)]);
  }
  return {
    md5: createHash("md5").update(blob).digest("hex").replace(/(..)(?!$)/g, "$1:"),
    sha256: `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`,
  };
}

/** Reads the SSH wire format (RFC 4251): uint32, string, mpint. */
class SshReader {
  #at = 0;
  constructor(readonly buf: Buffer) {}
  raw(n: number): Buffer {
    if (this.#at + n > this.buf.length) throw new KeyFormatError("it is truncated (damaged key)");
    const out = this.buf.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }
  uint32(): number {
    return this.raw(4).readUInt32BE(0);
  }
  string(): Buffer {
    return this.raw(this.uint32());
  }
  mpint(): Buffer {
    const b = this.string();
    return b[0] === 0 ? b.subarray(1) : b;
  }
}
