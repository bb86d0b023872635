/**
 * Encryption of snapshots and archived binlogs with age (https://age-encryption.org/v1): the keys, as pure
 * checks, and the `age` program as one more stage of the backup's kernel pipes, after zstd.
 *
 * An age file is a header (the file key, wrapped for each X25519 recipient, and a MAC over the header) and
 * the payload in the STREAM construction: 64 KiB chunks, each sealed with ChaCha20-Poly1305, the last one
 * flagged, so a changed, reordered or cut chunk fails to decrypt. `age` (the reference implementation, by
 * the format's author) streams: it holds one chunk at a time, whatever the snapshot's size. Why the program
 * and not the `age-encryption` npm package in this process: docs/DEVELOPING.md, Encryption.
 *
 * The identity (`AGE-SECRET-KEY-1…`) never goes on a command line: `age` reads it from a 0600 file in a 0700
 * directory made for the one pipeline and removed after it ({@link withIdentityFile}); `age-keygen -y` reads
 * it on stdin. Recipients (`age1…`) are public keys and go in argv, in manifests and in index entries.
 *
 * @module
 */

import { CommandFailedError, run } from "../exec.ts";
import type { Secret } from "../config.ts";
import { errorMessage } from "../text.ts";
import { isAgeRecipient } from "./age_keys.ts";

export { isAgeIdentity, isAgeRecipient, parseIdentities, parseRecipients } from "./age_keys.ts";

/** The encryption settings (BACKUP_ENCRYPTION_KEY, BACKUP_ENCRYPTION_RECIPIENTS). */
export interface EncryptionConfig {
  /**
   * The age identities that decrypt, one a line (several while a key is rotated); the last one's recipient is
   * also encrypted to.
   */
  readonly identity?: Secret;
  /** Further recipients to encrypt to (a node with no identity encrypts only). */
  readonly recipients?: readonly string[];
  /**
   * BACKUP_ALLOW_UNENCRYPTED: with an identity, restore unencrypted snapshots and binlogs too (else refused);
   * without keys, take unencrypted ones though the cluster's last snapshot is encrypted (else refused).
   */
  readonly allowUnencrypted?: boolean;
}

/** What a manifest or an index entry records about how its object is encrypted: public keys only. */
export interface EncryptionInfo {
  /** Always `age` (age-encryption.org/v1). */
  readonly format: "age";
  /** The X25519 recipients the object is encrypted to; any one's identity decrypts it. */
  readonly recipients: readonly string[];
}

/** The encryption settings made ready: the recipients to encrypt to, the identity and its recipient. */
export interface Keyring {
  /** Every recipient a new object is encrypted to (the current identity's and the configured), sorted, no duplicates. */
  readonly recipients: readonly string[];
  /**
   * The identities (one a line in `secret`), when configured: `recipient` is the last one's, the current key new
   * objects are encrypted to; `decrypts` holds every identity's recipient (older keys still decrypt).
   */
  readonly identity?: {
    readonly secret: Secret;
    readonly recipient: string;
    readonly decrypts?: readonly string[];
  };
  /** BACKUP_ALLOW_UNENCRYPTED: an unencrypted object is restored even though an identity is configured. */
  readonly allowUnencrypted?: boolean;
}

/**
 * A short form of a recipient for messages: `age1` and its first and last 6 characters.
 *
 * @example shortRecipient("age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq") // "age1qyqszq…3290gq"
 */
export function shortRecipient(r: string): string {
  return r.length > 20 ? `${r.slice(0, 10)}…${r.slice(-6)}` : r;
}

/**
 * The encryption record of a manifest or index entry, as read from JSON.
 *
 * @returns The record, or a problem (one phrase) when it is malformed.
 */
export function parseEncryptionInfo(raw: unknown): EncryptionInfo | { problem: string } {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return { problem: "must be an object" };
  const o = raw as Record<string, unknown>;
  if (o.format !== "age") return { problem: "must have format 'age'" };
  const r = o.recipients;
  if (!Array.isArray(r) || r.length === 0 || !r.every((x) => typeof x === "string" && isAgeRecipient(x))) {
    return { problem: "must list its age recipients (age1…)" };
  }
  return Object.freeze({ format: "age", recipients: Object.freeze([...r] as string[]) });
}

/** The record a new object encrypted for `keyring` carries. */
export function encryptionInfo(keyring: Keyring): EncryptionInfo {
  return Object.freeze({ format: "age", recipients: Object.freeze([...keyring.recipients]) });
}

/**
 * Whether the keyring can decrypt an object encrypted as `info` says, as one line to report when it cannot.
 *
 * @param info The object's encryption record.
 * @param keyring The node's keys; `undefined` when BACKUP_ENCRYPTION_KEY and BACKUP_ENCRYPTION_RECIPIENTS are
 *   both unset.
 * @param what The object, for the message, e.g. `snapshot 'db-backup-…'`.
 * @returns `undefined` when the identity is one of the object's recipients, else the problem.
 */
export function cannotDecrypt(
  info: EncryptionInfo,
  keyring: Keyring | undefined,
  what: string,
): string | undefined {
  const to = info.recipients.map(shortRecipient).join(", ");
  if (keyring?.identity === undefined) {
    return `${what} is encrypted (age, to ${to}) but BACKUP_ENCRYPTION_KEY is not set: set it to the identity ` +
      "(AGE-SECRET-KEY-1…) of one of those recipients";
  }
  const mine = keyring.identity.decrypts ?? [keyring.identity.recipient];
  if (info.recipients.some((r) => mine.includes(r))) return undefined;
  return `${what} is encrypted (age, to ${to}) and BACKUP_ENCRYPTION_KEY is not the identity of any of them ` +
    `(its ${mine.length === 1 ? "recipient is" : "recipients are"} ${
      mine.map(shortRecipient).join(", ")
    }): ` +
    "set the key it was encrypted for";
}

/**
 * Whether the keyring may restore an object stored as `info` says, as one line to report when it may not. An
 * encrypted one needs an identity of its recipients ({@link cannotDecrypt}). An unencrypted one is refused
 * when an identity is configured, unless BACKUP_ALLOW_UNENCRYPTED is set: the manifest or index entry alone
 * says whether an object is encrypted, and anyone who can write the store can write a plaintext object and
 * its record.
 *
 * @param info The object's encryption record; `undefined` for an unencrypted object.
 * @param what The object, for the message, e.g. `snapshot 'db-backup-…'`.
 * @returns `undefined` when it may be restored, else the problem.
 */
export function cannotRestore(
  info: EncryptionInfo | undefined,
  keyring: Keyring | undefined,
  what: string,
): string | undefined {
  if (info !== undefined) return cannotDecrypt(info, keyring, what);
  if (keyring?.identity === undefined || keyring.allowUnencrypted === true) return undefined;
  return `${what} is not encrypted, but BACKUP_ENCRYPTION_KEY is set, so it is refused (anyone who can write ` +
    "the store could have put it there): to restore the unencrypted snapshots and binlogs of a cluster from " +
    "before encryption was turned on, set BACKUP_ALLOW_UNENCRYPTED=true";
}

/**
 * Whether a node may store a new object unencrypted, as one line to report when it may not: a node with
 * neither key variable is refused when the cluster's published snapshot is encrypted (a node left out of the
 * key roll-out would otherwise write plaintext beside the ciphertext), unless BACKUP_ALLOW_UNENCRYPTED is set
 * (encryption turned off on purpose).
 *
 * @param published The encryption record of the snapshot LAST_BACKUP_KEY names, if any.
 * @param keyring The node's keys; `undefined` when neither key variable is set.
 * @param allowUnencrypted BACKUP_ALLOW_UNENCRYPTED.
 * @param what What would be stored, for the message, e.g. `the snapshot`.
 * @returns `undefined` when it may be stored, else the problem.
 */
export function cannotStorePlaintext(
  published: EncryptionInfo | undefined,
  keyring: Keyring | undefined,
  allowUnencrypted: boolean,
  what: string,
): string | undefined {
  if (keyring !== undefined || published === undefined || allowUnencrypted) return undefined;
  const to = published.recipients.map(shortRecipient).join(", ");
  return `${what} would be stored unencrypted, but the cluster's last snapshot is encrypted (age, to ${to}): set ` +
    "BACKUP_ENCRYPTION_KEY or BACKUP_ENCRYPTION_RECIPIENTS on this node as on the others (or " +
    "BACKUP_ALLOW_UNENCRYPTED=true to turn encryption off on purpose)";
}

/**
 * The encrypting stage: `age --encrypt -r R…` reads stdin and writes the age file to stdout.
 *
 * @throws {RangeError} when there is no recipient, or one is not an age recipient.
 */
export function encryptCommand(recipients: readonly string[]): string[] {
  if (recipients.length === 0) throw new RangeError("Cannot encrypt: no age recipient");
  const bad = recipients.find((r) => !isAgeRecipient(r));
  if (bad !== undefined) {
    throw new RangeError(`Cannot encrypt to '${bad}': it is not an age recipient (age1…)`);
  }
  return ["age", "--encrypt", ...recipients.flatMap((r) => ["-r", r])];
}

/**
 * The decrypting stage: `age --decrypt -i FILE` reads the age file on stdin and writes the plaintext. It
 * exits non-zero when no identity matches, the header's MAC fails, or a chunk fails to authenticate (after
 * writing the chunks before it: what follows must not use its output until every stage succeeded).
 *
 * @throws {RangeError} for a relative or multi-line path.
 */
export function decryptCommand(identityFile: string): string[] {
  if (!identityFile.startsWith("/") || /[\n\r\0]/.test(identityFile)) {
    throw new RangeError(
      `Cannot use '${identityFile}' as the identity file: use an absolute path on one line`,
    );
  }
  return ["age", "--decrypt", "-i", identityFile];
}

/** Whether a failed stage is the decrypting one. */
export function isDecryptFailure(e: unknown): e is CommandFailedError {
  return e instanceof CommandFailedError && e.program === "age";
}

/**
 * Makes the configured keys ready: derives each identity's recipient (`age-keygen -y`, the keys on stdin) and
 * merges the last one's (the current key) with the configured recipients.
 *
 * @returns The keyring, or `undefined` when no key is configured (encryption off).
 * @throws {Error} one line naming BACKUP_ENCRYPTION_KEY when `age-keygen` rejects it (a bad checksum), or
 *   cannot be run.
 */
export async function openKeyring(
  config: EncryptionConfig | undefined,
  signal?: AbortSignal,
): Promise<Keyring | undefined> {
  const configured = config?.recipients ?? [];
  if (config?.identity === undefined && configured.length === 0) return undefined;
  const allow = config?.allowUnencrypted === true ? { allowUnencrypted: true } : {};
  let identity: Keyring["identity"];
  if (config?.identity !== undefined) {
    let out: string[];
    try {
      out = (await run(["age-keygen", "-y"], { stdin: `${config.identity.reveal()}\n`, signal })).stdout
        .split("\n").map((l) => l.trim()).filter((l) => l !== "");
    } catch (e) {
      if (signal?.aborted) throw e;
      // age-keygen's own message may quote the key: never show it.
      throw new Error(
        e instanceof CommandFailedError
          ? "BACKUP_ENCRYPTION_KEY is not a valid age identity (age-keygen -y rejected it): generate one with " +
            "age-keygen and set the whole AGE-SECRET-KEY-1… line"
          : `Cannot read BACKUP_ENCRYPTION_KEY: age-keygen cannot be run (${errorMessage(e)}); install age`,
        { cause: e instanceof CommandFailedError ? undefined : e },
      );
    }
    if (out.length === 0 || !out.every(isAgeRecipient)) {
      throw new Error("BACKUP_ENCRYPTION_KEY did not give an age recipient (age-keygen -y): check the key");
    }
    identity = Object.freeze({
      secret: config.identity,
      recipient: out[out.length - 1],
      decrypts: Object.freeze([...new Set(out)]),
    });
  }
  const recipients = [...new Set([...(identity ? [identity.recipient] : []), ...configured])].sort();
  return Object.freeze({
    recipients: Object.freeze(recipients),
    ...(identity ? { identity } : {}),
    ...allow,
  });
}

/**
 * Runs `fn` with the identity in a 0600 file (in a fresh 0700 directory), removed afterwards whatever happens.
 *
 * @param keyring A keyring with an identity.
 * @param fn Gets the file's absolute path.
 * @throws {RangeError} when the keyring has no identity.
 */
export async function withIdentityFile<T>(keyring: Keyring, fn: (path: string) => Promise<T>): Promise<T> {
  if (keyring.identity === undefined) {
    throw new RangeError("Cannot decrypt: BACKUP_ENCRYPTION_KEY is not set");
  }
  const dir = await Deno.makeTempDir({ prefix: "autopilot-age-" });
  try {
    await Deno.chmod(dir, 0o700);
    const path = `${dir}/identity.txt`;
    await Deno.writeTextFile(path, `${keyring.identity.secret.reveal()}\n`, { mode: 0o600, createNew: true });
    return await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
