/**
 * The S3-compatible store: AWS S3 or any server that speaks its API (path-style or virtual-hosted), with
 * SigV4-signed requests over `fetch`.
 *
 * Client: `aws4fetch` (SigV4 signing only, no dependencies); the S3 calls we need are plain `fetch` requests
 * here. AWS SDK v3 (3.1169) fails at import under `-P=autopilot` even with explicit credentials and region: it
 * reads AWS_* variables itself (NotCapable: AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA), and it is 23 MB.
 *
 * Uploads are multipart with bounded memory: parts of {@link PART_SIZE} (growing only past 2,000 parts, so the
 * 10,000-part limit allows about 480 GiB), at most {@link PARTS_IN_FLIGHT} in flight plus the one being
 * filled; the body stream is read no faster than parts are sent. An object that fits in one part is sent with
 * a single PUT. Each part's payload is SHA-256-signed, so the server rejects bytes damaged in transit.
 *
 * @module
 */
import { AwsClient } from "aws4fetch";
import { createHash } from "node:crypto";
import { getLogger } from "@logtape/logtape";
import type { S3Config } from "../config.ts";
import {
  checkKey,
  NotFoundError,
  type ObjectInfo,
  type SnapshotStore,
  StoreUnavailableError,
  withIdleTimeout,
} from "./store.ts";
import { errorMessage } from "../text.ts";

const log = getLogger(["autopilot", "storage", "s3"]);

/** Size of the first 2,000 parts of a multipart upload (S3 needs at least 5 MiB for all but the last). */
export const PART_SIZE = 8 * 1024 * 1024;
/** Parts uploaded at the same time. */
export const PARTS_IN_FLIGHT = 2;
/** S3's limit on the parts of one upload. */
const MAX_PARTS = 10_000;
/** Upper bound for one request until its response headers arrive (a part upload included). */
const REQUEST_TIMEOUT_MS = 120_000;
/** Attempts for a request that failed on the network or with a 5xx/429 answer (bodies are in memory). */
const ATTEMPTS = 3;
/** Keys per DeleteObjects request (S3's maximum). */
const DELETE_BATCH = 1000;

/**
 * Size of part `n` (1-based): {@link PART_SIZE} for parts 1–2,000, then doubling every 2,000 parts up to
 * 16 × PART_SIZE, so very large snapshots still fit in 10,000 parts.
 */
export function partSize(n: number): number {
  return PART_SIZE * 2 ** Math.min(Math.floor((n - 1) / 2000), 4);
}

/** An S3 request that failed for a reason other than the store being unusable. */
export class S3RequestError extends Error {
  /** HTTP status (0: no answer). */
  readonly status: number;
  /** S3's error code, e.g. `NoSuchUpload` (empty when the answer had none). */
  readonly code: string;
  constructor(message: string, status: number, code: string) {
    super(message);
    this.name = "S3RequestError";
    this.status = status;
    this.code = code;
  }
}

/** Bytes held in memory: a part, a small object, a request body. */
type Bytes = Uint8Array<ArrayBuffer>;

/** One request to the bucket. */
interface S3Request {
  readonly method: "GET" | "PUT" | "POST" | "DELETE" | "HEAD";
  /** The full object key (prefix included); absent for bucket requests. */
  readonly key?: string;
  readonly query?: Record<string, string>;
  readonly headers?: Record<string, string>;
  readonly body?: Bytes;
  readonly signal?: AbortSignal;
  /** What this request does, for messages (`upload part 3 of 'x'`). */
  readonly op: string;
  /** Answers (by S3 error code or HTTP status) that the caller handles itself. */
  readonly accept?: (status: number, code: string) => boolean;
}

/** A {@link SnapshotStore} on an S3-compatible bucket; keys are stored as `S3_PREFIX` + key. */
export class S3Store implements SnapshotStore {
  readonly kind = "s3";
  readonly location: string;
  readonly #config: S3Config;
  readonly #client: AwsClient | undefined;
  /** `scheme://host[:port][/path]` of the service, no trailing slash. */
  readonly #endpoint: string;
  /** URL of the bucket's root, ending in `/`. */
  readonly #bucketUrl: string;
  readonly #secrets: string[];

  constructor(config: S3Config) {
    this.#config = config;
    this.location = `s3://${config.bucket}/${config.prefix}`;
    this.#endpoint = (config.endpoint ?? `https://s3.${config.region}.amazonaws.com`).replace(/\/+$/, "");
    const url = new URL(this.#endpoint);
    const path = url.pathname.replace(/\/+$/, "");
    this.#bucketUrl = config.forcePathStyle
      ? `${url.origin}${path}/${encodeSegment(config.bucket)}/`
      : `${url.protocol}//${config.bucket}.${url.host}${path}/`;
    const id = config.accessKeyId?.reveal();
    const secret = config.secretAccessKey?.reveal();
    this.#secrets = [id, secret].filter((s): s is string => s !== undefined && s.length >= 4);
    // Without credentials, requests go unsigned (a public bucket, or a server that allows anonymous access).
    this.#client = id !== undefined && secret !== undefined
      ? new AwsClient({ accessKeyId: id, secretAccessKey: secret, service: "s3", region: config.region })
      : undefined;
  }

  async put(key: string, body: ReadableStream<Uint8Array>, signal?: AbortSignal): Promise<ObjectInfo> {
    const full = this.#fullKey(checkKey(key));
    const parts = new PartReader(body);
    try {
      signal?.throwIfAborted();
      const first = await parts.next(partSize(1), signal);
      if (first === undefined || first.byteLength < partSize(1)) {
        const bytes = first ?? new Uint8Array(0);
        const res = await this.#send({
          method: "PUT",
          key: full,
          body: bytes,
          headers: payloadHeaders(bytes),
          signal,
          op: `store '${key}'`,
        });
        await res.body?.cancel();
      } else {
        await this.#multipart(key, full, first, parts, signal);
      }
    } catch (e) {
      await parts.cancel(e);
      throw e;
    }
    // Stored: from here on the caller's signal no longer applies.
    const res = await this.#send({ method: "HEAD", key: full, op: `check the stored '${key}'` });
    return {
      key,
      size: Number(res.headers.get("content-length") ?? 0),
      modified: lastModified(res.headers.get("last-modified")),
    };
  }

  async get(key: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const res = await this.#send({
      method: "GET",
      key: this.#fullKey(checkKey(key)),
      signal,
      op: `read '${key}'`,
      accept: (status, code) => code === "NoSuchKey" || (status === 404 && code === ""),
    });
    if (!res.ok) {
      await res.body?.cancel();
      throw new NotFoundError(this.kind, key);
    }
    return withIdleTimeout(
      res.body ?? ReadableStream.from<Uint8Array>([]),
      `reading '${key}' from ${this.location}`,
    );
  }

  async *list(prefix = ""): AsyncIterable<ObjectInfo> {
    const base = this.#config.prefix;
    let token: string | undefined;
    do {
      const query: Record<string, string> = { "list-type": "2", prefix: base + prefix, "max-keys": "1000" };
      if (token !== undefined) query["continuation-token"] = token;
      const res = await this.#send({
        method: "GET",
        query,
        op: prefix === "" ? "list the objects" : `list the objects under '${prefix}'`,
      });
      const xml = await res.text();
      for (const block of elements(xml, "Contents")) {
        const full = text(block, "Key");
        if (full === undefined || !full.startsWith(base)) continue;
        const key = full.slice(base.length);
        if (!isKey(key)) continue; // not ours: "folder" markers, names checkKey refuses
        yield {
          key,
          size: Number(text(block, "Size") ?? 0),
          modified: lastModified(text(block, "LastModified") ?? null),
        };
      }
      token = text(xml, "IsTruncated") === "true" ? text(xml, "NextContinuationToken") : undefined;
    } while (token !== undefined);
  }

  async delete(keys: readonly string[]): Promise<void> {
    const full = keys.map((k) => this.#fullKey(checkKey(k)));
    for (let i = 0; i < full.length; i += DELETE_BATCH) {
      const batch = full.slice(i, i + DELETE_BATCH);
      const xml = '<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>' +
        batch.map((k) => `<Object><Key>${escapeXml(k)}</Key></Object>`).join("") + "</Delete>";
      const body = new TextEncoder().encode(xml);
      const res = await this.#send({
        method: "POST",
        query: { delete: "" },
        body,
        headers: {
          ...payloadHeaders(body),
          "content-md5": createHash("md5").update(body).digest("base64"),
          "content-type": "application/xml",
        },
        op: `delete ${batch.length} objects`,
        accept: (status) => status === 501, // no DeleteObjects: one by one
      });
      if (res.status === 501) {
        await res.body?.cancel();
        for (const key of batch) {
          await this.#send({
            method: "DELETE",
            key,
            op: `delete '${key}'`,
            accept: (status, code) => code === "NoSuchKey" || status === 404,
          }).then((r) => r.body?.cancel());
        }
        continue;
      }
      const answer = await res.text();
      const failed = elements(answer, "Error").filter((e) => text(e, "Code") !== "NoSuchKey");
      if (failed.length > 0) {
        const [code, message, key] = [
          text(failed[0], "Code"),
          text(failed[0], "Message"),
          text(failed[0], "Key"),
        ];
        throw new S3RequestError(
          this.#scrub(
            `Cannot delete ${failed.length} of ${batch.length} objects from ${this.location} ` +
              `(first: '${key}': ${code}: ${message})`,
          ),
          res.status,
          code ?? "",
        );
      }
    }
  }

  /** Uploads `first` and the rest of `parts` as a multipart upload; aborts the upload on any failure. */
  async #multipart(
    key: string,
    full: string,
    first: Bytes,
    parts: PartReader,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const created = await this.#send({
      method: "POST",
      key: full,
      query: { uploads: "" },
      signal,
      op: `start the upload of '${key}'`,
    });
    const uploadId = text(await created.text(), "UploadId");
    if (!uploadId) throw new S3RequestError(`S3 gave no UploadId for '${key}'`, created.status, "");
    const query = (extra: Record<string, string> = {}) => ({ uploadId, ...extra });
    const stop = new AbortController();
    const partSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
    const etags: string[] = [];
    const inFlight = new Set<Promise<void>>();
    // A part that fails while the loop is reading the source has already left `inFlight`: remember its error,
    // or the upload would be completed without it.
    let failure: { error: unknown } | undefined;
    const throwIfAPartFailed = () => {
      if (failure) throw failure.error;
    };
    try {
      let n = 1;
      let bytes: Bytes | undefined = first;
      while (bytes !== undefined) {
        if (n > MAX_PARTS) {
          throw new S3RequestError(`Cannot store '${key}': it needs more than ${MAX_PARTS} parts`, 0, "");
        }
        const partNumber = n;
        const body: Bytes = bytes;
        const upload: Promise<void> = (async () => {
          const res = await this.#send({
            method: "PUT",
            key: full,
            query: query({ partNumber: String(partNumber) }),
            body,
            headers: payloadHeaders(body),
            signal: partSignal,
            op: `upload part ${partNumber} of '${key}'`,
          });
          await res.body?.cancel();
          const etag = res.headers.get("etag");
          if (!etag) throw new S3RequestError(`S3 gave no ETag for part ${partNumber} of '${key}'`, 200, "");
          etags[partNumber - 1] = etag;
          parts.recycle(body);
        })().finally(() => inFlight.delete(upload));
        upload.catch((error) => {
          failure ??= { error };
          stop.abort(error); // the other parts stop too
        });
        inFlight.add(upload);
        if (inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(inFlight);
        throwIfAPartFailed();
        n++;
        bytes = await parts.next(partSize(n), signal);
        throwIfAPartFailed();
      }
      await Promise.all(inFlight);
      throwIfAPartFailed();
      if (etags.length !== n - 1 || etags.some((etag) => !etag)) {
        throw new S3RequestError(`Cannot store '${key}': a part of its upload is missing`, 0, "");
      }
      const xml = "<CompleteMultipartUpload>" +
        etags.map((etag, i) =>
          `<Part><PartNumber>${i + 1}</PartNumber><ETag>${escapeXml(etag)}</ETag></Part>`
        )
          .join("") +
        "</CompleteMultipartUpload>";
      const body = new TextEncoder().encode(xml);
      const res = await this.#send({
        method: "POST",
        key: full,
        query: query(),
        body,
        headers: { ...payloadHeaders(body), "content-type": "application/xml" },
        signal,
        op: `complete the upload of '${key}'`,
      });
      // S3 may answer 200 and still report an error in the body.
      const answer = await res.text();
      if (/<Error>/.test(answer)) {
        const code = text(answer, "Code") ?? "";
        throw new S3RequestError(
          this.#scrub(`S3 could not complete the upload of '${key}': ${code}: ${text(answer, "Message")}`),
          res.status,
          code,
        );
      }
    } catch (e) {
      stop.abort(e);
      await Promise.allSettled(inFlight);
      try {
        const res = await this.#send({
          method: "DELETE",
          key: full,
          query: query(),
          op: `abort the upload of '${key}'`,
          accept: (_status, code) => code === "NoSuchUpload",
        });
        await res.body?.cancel();
      } catch (abortError) {
        log.warn(
          "Could not abort the multipart upload {uploadId} of {key}: {error}; its parts stay in the bucket " +
            "until a lifecycle rule (AbortIncompleteMultipartUpload) removes them",
          { uploadId, key, error: errorMessage(abortError) },
        );
      }
      throw e;
    }
  }

  /**
   * Sends one signed request and returns a response that is OK or `accept`ed; maps failures: unreachable,
   * credentials refused, missing bucket or wrong region to {@link StoreUnavailableError}, the rest to
   * {@link S3RequestError}. An abort by the caller's signal rejects with its reason.
   */
  async #send(req: S3Request): Promise<Response> {
    // The query is encoded as SigV4 canonicalises it (%20, not '+'), so what is sent is what was signed.
    const query = Object.entries(req.query ?? {}).map(([k, v]) => `${encodeSegment(k)}=${encodeSegment(v)}`);
    const path = req.key === undefined ? this.#bucketUrl : this.#bucketUrl + encodeKey(req.key);
    const url = query.length > 0 ? `${path}?${query.join("&")}` : path;
    for (let attempt = 1;; attempt++) {
      req.signal?.throwIfAborted();
      const timeout = new AbortController();
      const timer = setTimeout(() => timeout.abort(), REQUEST_TIMEOUT_MS);
      const init: RequestInit = {
        method: req.method,
        headers: req.headers,
        body: req.body,
        signal: req.signal ? AbortSignal.any([req.signal, timeout.signal]) : timeout.signal,
      };
      let res: Response;
      try {
        res = await fetch(
          this.#client ? await this.#client.sign(url, init) : new Request(url, init),
        );
      } catch (e) {
        if (req.signal?.aborted) throw req.signal.reason;
        const why = timeout.signal.aborted
          ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`
          : networkError(e);
        if (attempt < ATTEMPTS) {
          await backoff(attempt, req.signal);
          continue;
        }
        throw new StoreUnavailableError(
          this.#scrub(
            `Cannot reach the S3 store at ${this.#endpoint} to ${req.op}: ${why}: ` +
              "check S3_ENDPOINT and that the server is up",
          ),
        );
      } finally {
        clearTimeout(timer);
      }
      if (res.ok) return res;
      const body = req.method === "HEAD" ? "" : await res.text().catch(() => "");
      const code = text(body, "Code") ?? res.headers.get("x-amz-error-code") ?? "";
      if (req.accept?.(res.status, code)) return new Response(null, { status: res.status });
      if ((res.status >= 500 || res.status === 429) && res.status !== 501 && attempt < ATTEMPTS) {
        await backoff(attempt, req.signal);
        continue;
      }
      throw this.#failure(req, res.status, code, text(body, "Message") ?? res.statusText);
    }
  }

  #failure(req: S3Request, status: number, code: string, detail: string): Error {
    const { bucket, region } = this.#config;
    const what = code ? `${code}: ${detail}` : `HTTP ${status} ${detail}`.trim();
    const at = `the S3 store at ${this.#endpoint}`;
    const unavailable = (msg: string) => new StoreUnavailableError(this.#scrub(msg));
    if (code === "NoSuchBucket") {
      return unavailable(
        `The bucket '${bucket}' does not exist at ${this.#endpoint}: create it, or fix S3_BUCKET`,
      );
    }
    if (
      status === 301 || code === "PermanentRedirect" || code === "AuthorizationHeaderMalformed" ||
      code === "IllegalLocationConstraintException"
    ) {
      return unavailable(
        `${capitalise(at)} says bucket '${bucket}' is not in region '${region}' (${what}): fix S3_REGION`,
      );
    }
    // versitygw answers an unknown access key with 404 XAdminUserNotFound.
    if (
      status === 401 || status === 403 || /AccessKey|Signature|AccessDenied|Token$|UserNotFound/.test(code)
    ) {
      return unavailable(
        this.#client
          ? `${capitalise(at)} refused our credentials for bucket '${bucket}' (${what}): ` +
            "check S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY and the bucket's policy"
          : `${capitalise(at)} refused anonymous access to bucket '${bucket}' (${what}): ` +
            "set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY",
      );
    }
    return new S3RequestError(this.#scrub(`Cannot ${req.op} in ${this.location}: ${what}`), status, code);
  }

  #fullKey(key: string): string {
    return this.#config.prefix + key;
  }

  /** Removes the access key id and secret from text that came from elsewhere. */
  #scrub(s: string): string {
    return this.#secrets.reduce((out, secret) => out.replaceAll(secret, "<redacted>"), s);
  }
}

/**
 * Reads a byte stream in parts of a requested size. Buffers of sent parts are handed back with
 * {@link PartReader.recycle} and reused, so an upload keeps a few buffers instead of leaving one per part to
 * the garbage collector.
 */
class PartReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #free: Bytes[] = [];
  #rest: Uint8Array | undefined;
  #done = false;

  constructor(body: ReadableStream<Uint8Array>) {
    this.#reader = body.getReader();
  }

  /** The next `size` bytes (fewer only at the end), or `undefined` when nothing is left. */
  async next(size: number, signal: AbortSignal | undefined): Promise<Bytes | undefined> {
    let part: Bytes | undefined;
    let filled = 0;
    while (filled < size) {
      let chunk = this.#rest;
      this.#rest = undefined;
      if (chunk === undefined) {
        if (this.#done) break;
        const r = await abortable(() => this.#reader.read(), signal);
        if (r.done) {
          this.#done = true;
          break;
        }
        chunk = r.value;
      }
      if (chunk.byteLength === 0) continue;
      part ??= this.#buffer(size);
      const take = Math.min(chunk.byteLength, size - filled);
      part.set(take === chunk.byteLength ? chunk : chunk.subarray(0, take), filled);
      filled += take;
      if (take < chunk.byteLength) this.#rest = chunk.subarray(take);
    }
    return part === undefined ? undefined : filled === size ? part : part.subarray(0, filled);
  }

  /** Takes back the buffer of a part that was sent (a part may be a view of the start of one). */
  recycle(part: Bytes): void {
    if (this.#free.length <= PARTS_IN_FLIGHT) this.#free.push(new Uint8Array(part.buffer));
  }

  #buffer(size: number): Bytes {
    const i = this.#free.findIndex((b) => b.byteLength === size);
    return i >= 0 ? this.#free.splice(i, 1)[0] : new Uint8Array(size);
  }

  /** Stops the producer (after a failure). */
  async cancel(reason: unknown): Promise<void> {
    await this.#reader.cancel(reason).catch(() => {});
  }
}

/**
 * Starts `start()` unless `signal` is already aborted, and settles with it unless `signal` aborts first. Nothing
 * is started after an abort, so no promise is left that nobody awaits (its rejection would end the process).
 */
function abortable<T>(start: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return start();
  if (signal.aborted) return Promise.reject(signal.reason);
  const promise = start();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Signs the payload's SHA-256, so the server rejects a body damaged in transit. */
function payloadHeaders(body: Bytes): Record<string, string> {
  // node:crypto hashes the bytes in place; WebCrypto's digest would copy each part first.
  return { "x-amz-content-sha256": createHash("sha256").update(body).digest("hex") };
}

function backoff(attempt: number, signal: AbortSignal | undefined): Promise<void> {
  const ms = 200 * 4 ** (attempt - 1) * (0.5 + Math.random() / 2);
  if (!signal) return new Promise((resolve) => setTimeout(resolve, ms));
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** The `<name>…</name>` elements' contents in `xml` (flat; S3's answers do not nest an element in itself). */
function elements(xml: string, name: string): string[] {
  return [...xml.matchAll(new RegExp(`<${name}(?:\\s[^>]*)?>([\\s\\S]*?)</${name}>`, "g"))].map((m) => m[1]);
}

/** The text of the first `<name>` element, entities decoded. */
function text(xml: string, name: string): string | undefined {
  const [first] = elements(xml, name);
  return first === undefined ? undefined : unescapeXml(first);
}

function unescapeXml(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_, e: string) => {
    if (e[0] === "#") {
      return String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : Number(e.slice(1)));
    }
    return ({ amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" } as Record<string, string>)[e];
  });
}

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A path segment, percent-encoded as SigV4 wants it (RFC 3986 unreserved characters kept). */
function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function encodeKey(key: string): string {
  return key.split("/").map(encodeSegment).join("/");
}

function isKey(key: string): boolean {
  try {
    checkKey(key);
    return true;
  } catch {
    return false;
  }
}

function lastModified(value: string | null): Date {
  const d = value ? new Date(value) : new Date(NaN);
  return Number.isNaN(d.getTime()) ? new Date(0) : d;
}

/** What a failed `fetch` says went wrong (Deno puts the detail in `cause`), without the URL. */
function networkError(e: unknown): string {
  const detail = e instanceof Error && e.cause instanceof Error ? e.cause.message : errorMessage(e);
  return detail.replace(/^error sending request for url \([^)]*\): /, "");
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
