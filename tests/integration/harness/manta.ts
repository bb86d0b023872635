/**
 * A local server speaking the part of Manta's Directory API that the Manta store uses, for integration tests:
 * PutObject (streamed, chunked or not), PutDirectory (`content-type: application/json; type=directory`),
 * GetObject, ListDirectory (`application/x-json-stream`, `limit`/`marker`), HEAD and DELETE, with Manta's error
 * bodies (`{"code": "...", "message": "..."}`). It runs in the test's own process (`Deno.serve`) and stores
 * objects as files below a temporary root: `/<user>/stor/a/b` is `<root>/<user>/stor/a/b`.
 *
 * Every request must carry a valid HTTP Signature (draft-cavage, as Manta checks it): the keyId must be
 * `/<user>[/<subuser>]/keys/<MD5 fingerprint>` of one of the account's public keys, the signed headers must
 * include `date`, the date must be within five minutes of now, and the signature must verify with that public
 * key. Failures get 401 (no or malformed Authorization) or 403 (unknown key, wrong user, bad signature, stale
 * date), like Manta. The verifier is written independently of the store's signer: it reads OpenSSH public key
 * lines (`ssh-rsa AAAA...`) itself.
 *
 * An upload is written to a temporary file outside the namespace and renamed into place only once the whole
 * body has arrived, so an aborted upload leaves nothing (Manta commits an object's metadata only at the end).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash, createPublicKey, type KeyObject, verify } from "node:crypto";

/** Options for {@linkcode startManta}. */
export interface StartMantaOptions {
  /** The account (login). */
  user: string;
  /** The account's public keys, as OpenSSH lines (the contents of `id_rsa.pub`). */
  publicKeys: readonly string[];
  /** Subusers allowed besides the account itself (`/<user>/<subuser>/keys/...`). */
  subusers?: readonly string[];
  /** Address to listen on (default 127.0.0.1); a namespace network's `hostAddress` for nodes in namespaces. */
  hostname?: string;
  /** Port (default: any free one). */
  port?: number;
  /** Where objects are kept (default: a fresh temporary directory, removed on stop). */
  dir?: string;
  /** Allowed clock skew in seconds (default 300, Manta's). */
  maxSkewSeconds?: number;
  /** Serve HTTPS with this PEM certificate and key (e.g. a self-signed one). */
  tls?: { readonly cert: string; readonly key: string };
  /**
   * Largest streamed (chunked) object accepted without a `max-content-length` header (default 5 GB, Manta's);
   * with the header, its value is the limit. Bigger uploads are refused with 413 once read.
   */
  streamLimitBytes?: number;
}

/** One request as the server saw it. */
export interface MantaRequest {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** The error code sent (`InvalidSignature`...), or `aborted` for an upload whose body never completed. */
  readonly code?: string;
  readonly keyId?: string;
  /** Whether the body came chunked (no content-length). */
  readonly chunked: boolean;
  /** The `max-content-length` header, if sent. */
  readonly maxContentLength?: string;
}

/** A running fake Manta. */
export interface MantaServer extends AsyncDisposable {
  /** `http://host:port` (`https://` with `tls`). */
  readonly url: string;
  readonly port: number;
  readonly user: string;
  /** Directory holding `<user>/stor/...`. */
  readonly root: string;
  /** MD5 fingerprints (`aa:bb:...`) of the account's keys, in the order given. */
  readonly fingerprints: readonly string[];
  /** Every request so far. */
  readonly requests: readonly MantaRequest[];
  /** Creates a directory (and its parents) directly, e.g. the store's bucket directory. */
  mkdirp(path: string): Promise<void>;
  /** Local file of a Manta path (whether or not it exists). */
  file(path: string): string;
  /** Stops listening and removes a temporary root. */
  stop(): Promise<void>;
}

/** A public key read from an OpenSSH line, with its MD5 fingerprint. */
export interface SshPublicKey {
  readonly key: KeyObject;
  readonly md5: string;
}

/** Reads an OpenSSH public key line (`ssh-rsa`, `ssh-ed25519`, `ecdsa-sha2-nistp*`). */
export function parseSshPublicKey(line: string): SshPublicKey {
  const blob = Buffer.from(line.trim().split(/\s+/)[1] ?? "", "base64");
  let at = 0;
  const next = (): Buffer => {
    const len = blob.readUInt32BE(at);
    const out = blob.subarray(at + 4, at + 4 + len);
    at += 4 + len;
    return out;
  };
  const unsigned = (b: Buffer) => (b[0] === 0 ? b.subarray(1) : b).toString("base64url");
  const type = next().toString();
  let key: KeyObject;
  if (type === "ssh-rsa") {
    const e = next();
    const n = next();
    key = createPublicKey({ key: { kty: "RSA", e: unsigned(e), n: unsigned(n) }, format: "jwk" });
  } else if (type === "ssh-ed25519") {
    key = createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: next().toString("base64url") },
      format: "jwk",
    });
  } else if (type.startsWith("ecdsa-sha2-")) {
    const crv = { nistp256: "P-256", nistp384: "P-384", nistp521: "P-521" }[next().toString()] ?? "";
    const q = next();
    const size = (q.length - 1) / 2;
    key = createPublicKey({
      key: {
        kty: "EC",
        crv,
        x: q.subarray(1, 1 + size).toString("base64url"),
        y: q.subarray(1 + size).toString("base64url"),
      },
      format: "jwk",
    });
  } else {
    throw new Error(`unsupported public key type ${type}`);
  }
  const md5 = createHash("md5").update(blob).digest("hex").replace(/(..)(?!$)/g, "$1:");
  return { key, md5 };
}

class MantaError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

/** Starts the server; stop it with `stop()` or `await using`. */
export async function startManta(opts: StartMantaOptions): Promise<MantaServer> {
  const keys = opts.publicKeys.map(parseSshPublicKey);
  const ownRoot = opts.dir === undefined;
  const root = opts.dir ?? await Deno.makeTempDir({ prefix: "autopilot-manta-" });
  const uploads = `${root}/.uploads`;
  await Deno.mkdir(`${root}/${opts.user}/stor`, { recursive: true });
  await Deno.mkdir(`${root}/${opts.user}/public`, { recursive: true });
  await Deno.mkdir(uploads, { recursive: true });
  const requests: MantaRequest[] = [];
  const md5s = new Map<string, string>();
  const skew = (opts.maxSkewSeconds ?? 300) * 1000;

  const file = (path: string) => `${root}${path}`;

  function authenticate(req: Request): string {
    const auth = req.headers.get("authorization");
    if (!auth) throw new MantaError(401, "AuthorizationRequired", "Authorization header required");
    const m = /^Signature (.*)$/.exec(auth);
    if (!m) throw new MantaError(401, "AuthSchemeError", "Authorization scheme must be Signature");
    const params = new Map<string, string>();
    for (const p of m[1].matchAll(/(\w+)="([^"]*)"/g)) params.set(p[1], p[2]);
    const keyId = params.get("keyId") ?? "";
    const id = /^\/([^/]+)(?:\/([^/]+))?\/keys\/([0-9a-f:]+)$/.exec(keyId);
    const signature = params.get("signature");
    const algorithm = (params.get("algorithm") ?? "").toLowerCase();
    if (!id || !signature || !algorithm) {
      throw new MantaError(401, "InvalidAuthorizationHeader", "keyId, algorithm and signature are required");
    }
    if (id[1] !== opts.user || (id[2] !== undefined && !(opts.subusers ?? []).includes(id[2]))) {
      throw new MantaError(403, "InvalidKeyId", `${keyId} is not a key of this account`);
    }
    const key = keys.find((k) => k.md5 === id[3]);
    if (!key) throw new MantaError(403, "InvalidKeyId", `${keyId} is not a key of this account`);
    const signed = (params.get("headers") ?? "date").toLowerCase().split(" ");
    if (!signed.includes("date")) {
      throw new MantaError(403, "InvalidSignature", "the date header must be signed");
    }
    const date = req.headers.get("date");
    if (!date || Number.isNaN(Date.parse(date))) {
      throw new MantaError(403, "InvalidSignature", "date missing");
    }
    if (Math.abs(Date.now() - Date.parse(date)) > skew) {
      throw new MantaError(403, "RequestTimeTooSkewed", "the date header is too far from the server's time");
    }
    const url = new URL(req.url);
    const text = signed.map((h) =>
      h === "(request-target)"
        ? `(request-target): ${req.method.toLowerCase()} ${url.pathname}${url.search}`
        : `${h}: ${req.headers.get(h) ?? ""}`
    ).join("\n");
    const [kind, hash] = algorithm.split("-");
    const expected = { rsa: "rsa", ecdsa: "ec", ed25519: "ed25519" }[kind];
    if (expected !== key.key.asymmetricKeyType) {
      throw new MantaError(403, "InvalidSignature", `algorithm ${algorithm} does not fit the key`);
    }
    const ok = verify(
      kind === "ed25519" ? null : hash,
      Buffer.from(text),
      key.key,
      Buffer.from(signature, "base64"),
    );
    if (!ok) throw new MantaError(403, "InvalidSignature", "The signature we calculated does not match");
    return keyId;
  }

  function checkPath(path: string): void {
    const parts = path.split("/");
    if (parts[1] !== opts.user || !["stor", "public"].includes(parts[2] ?? "") || parts.includes("..")) {
      throw new MantaError(403, "AuthorizationFailed", `no access to ${path}`);
    }
  }

  async function statOf(path: string): Promise<Deno.FileInfo | undefined> {
    return await Deno.stat(file(path)).catch(() => undefined);
  }

  async function parentIsDir(path: string): Promise<void> {
    const parent = path.slice(0, path.lastIndexOf("/"));
    const st = await statOf(parent);
    if (!st) throw new MantaError(404, "DirectoryDoesNotExist", `${parent} does not exist`);
    if (!st.isDirectory) throw new MantaError(400, "ParentNotDirectory", `${parent} is not a directory`);
  }

  function objectHeaders(path: string, st: Deno.FileInfo): Headers {
    const h = new Headers({
      "content-type": "application/octet-stream",
      "content-length": String(st.size),
      etag: `${st.ino ?? 0}-${st.mtime?.getTime() ?? 0}`,
      "last-modified": (st.mtime ?? new Date()).toUTCString(),
    });
    const md5 = md5s.get(path);
    if (md5) h.set("content-md5", md5);
    return h;
  }

  async function handle(req: Request, path: string): Promise<Response> {
    checkPath(path);
    const st = await statOf(path);
    const dirType = "application/x-json-stream; type=directory";
    switch (req.method) {
      case "HEAD":
      case "GET": {
        if (!st) throw new MantaError(404, "ResourceNotFound", `${path} was not found`);
        if (st.isFile) {
          const headers = objectHeaders(path, st);
          if (req.method === "HEAD") return new Response(null, { headers });
          return new Response((await Deno.open(file(path))).readable, { headers });
        }
        const url = new URL(req.url);
        const limit = Math.min(Number(url.searchParams.get("limit") ?? 256), 1000);
        const marker = url.searchParams.get("marker") ?? "";
        const entries = await Array.fromAsync(Deno.readDir(file(path)));
        const names = entries.map((e) => e.name).sort();
        const lines: string[] = [];
        for (const name of names.filter((n) => n >= marker).slice(0, limit)) {
          const est = await statOf(`${path}/${name}`);
          if (!est) continue;
          const mtime = (est.mtime ?? new Date()).toISOString();
          lines.push(JSON.stringify(
            est.isDirectory
              ? { name, type: "directory", mtime }
              : { name, etag: `${est.ino}`, size: est.size, type: "object", mtime },
          ));
        }
        const headers = { "content-type": dirType, "result-set-size": String(names.length) };
        return new Response(req.method === "HEAD" ? null : lines.map((l) => `${l}\n`).join(""), { headers });
      }
      case "PUT": {
        await parentIsDir(path);
        if (
          (req.headers.get("content-type") ?? "").replace(/\s/g, "") === "application/json;type=directory"
        ) {
          if (st && !st.isDirectory) throw new MantaError(400, "DirectoryOperation", `${path} is an object`);
          if (!st) {
            // idempotent, like Manta's, also when several requests create the same directory at once
            await Deno.mkdir(file(path)).catch((e) => {
              if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
            });
          }
          return new Response(null, { status: 204 });
        }
        if (st?.isDirectory) throw new MantaError(400, "DirectoryOperation", `${path} is a directory`);
        const tmp = `${uploads}/${crypto.randomUUID()}`;
        const md5 = createHash("md5");
        const out = await Deno.open(tmp, { write: true, createNew: true });
        try {
          const hashing = new TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, c) {
              md5.update(chunk);
              c.enqueue(chunk);
            },
          });
          await (req.body ?? ReadableStream.from([])).pipeThrough(hashing).pipeTo(out.writable);
        } catch (e) {
          await Deno.remove(tmp).catch(() => {});
          throw new MantaError(499, "aborted", `upload of ${path} did not complete: ${e}`);
        }
        const limit = Number(req.headers.get("max-content-length") ?? opts.streamLimitBytes ?? 5 * 1024 ** 3);
        if (req.headers.get("content-length") === null && (await Deno.stat(tmp)).size > limit) {
          await Deno.remove(tmp);
          throw new MantaError(
            413,
            "RequestEntityTooLarge",
            `${path} is larger than the ${limit} bytes allowed`,
          );
        }
        const digest = md5.digest("base64");
        const sent = req.headers.get("content-md5");
        if (sent && sent !== digest) {
          await Deno.remove(tmp);
          throw new MantaError(400, "ContentMD5Mismatch", "Content-MD5 does not match");
        }
        await Deno.rename(tmp, file(path));
        md5s.set(path, digest);
        const after = await Deno.stat(file(path));
        return new Response(null, {
          status: 204,
          headers: { "computed-md5": digest, "last-modified": (after.mtime ?? new Date()).toUTCString() },
        });
      }
      case "DELETE": {
        if (!st) throw new MantaError(404, "ResourceNotFound", `${path} was not found`);
        if (st.isDirectory) {
          if ((await Array.fromAsync(Deno.readDir(file(path)))).length > 0) {
            throw new MantaError(400, "DirectoryNotEmpty", `${path} is not empty`);
          }
        }
        await Deno.remove(file(path));
        md5s.delete(path);
        return new Response(null, { status: 204 });
      }
      default:
        throw new MantaError(405, "BadRequest", `${req.method} is not supported`);
    }
  }

  const server = Deno.serve({
    hostname: opts.hostname ?? "127.0.0.1",
    port: opts.port ?? 0,
    ...(opts.tls ?? {}),
    onListen() {},
  }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname).replace(/\/+$/, "");
    const chunked = req.headers.get("content-length") === null && req.body !== null;
    const max = req.headers.get("max-content-length");
    const maxContentLength = max === null ? {} : { maxContentLength: max };
    let keyId: string | undefined;
    try {
      keyId = authenticate(req);
      const res = await handle(req, path);
      requests.push({ method: req.method, path, status: res.status, keyId, chunked, ...maxContentLength });
      res.headers.set("server", "Manta/2");
      return res;
    } catch (e) {
      if (!(e instanceof MantaError)) throw e;
      requests.push({
        method: req.method,
        path,
        status: e.status,
        code: e.code,
        chunked,
        ...maxContentLength,
        ...(keyId ? { keyId } : {}),
      });
      return Response.json({ code: e.code, message: e.message }, {
        status: e.status === 499 ? 400 : e.status,
        headers: { server: "Manta/2" },
      });
    }
  });
  const port = server.addr.port;
  const stop = async () => {
    await server.shutdown();
    if (ownRoot) await Deno.remove(root, { recursive: true }).catch(() => {});
  };
  return {
    url: `${opts.tls ? "https" : "http"}://${opts.hostname ?? "127.0.0.1"}:${port}`,
    port,
    user: opts.user,
    root,
    fingerprints: keys.map((k) => k.md5),
    requests,
    mkdirp: (path: string) => Deno.mkdir(file(path), { recursive: true }),
    file,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
