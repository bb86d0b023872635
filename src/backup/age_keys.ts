/**
 * The shapes of age X25519 keys (https://age-encryption.org/v1), as pure checks with no imports: the
 * configuration validates BACKUP_ENCRYPTION_KEY and BACKUP_ENCRYPTION_RECIPIENTS with them at load.
 *
 * @module
 */

const BECH32 = "[02-9ac-hj-np-z]";
const RECIPIENT = new RegExp(`^age1${BECH32}{58}$`);
const IDENTITY = new RegExp(`^AGE-SECRET-KEY-1${BECH32.toUpperCase()}{58}$`);

/**
 * Whether a text has the shape of an age X25519 identity (`AGE-SECRET-KEY-1` and 58 bech32 characters).
 * The checksum is `age`'s to check, when the key is first used.
 */
export function isAgeIdentity(s: string): boolean {
  return IDENTITY.test(s);
}

/** Whether a text has the shape of an age X25519 recipient (`age1` and 58 bech32 characters). */
export function isAgeRecipient(s: string): boolean {
  return RECIPIENT.test(s);
}

/**
 * The identities of an age identity file (what `age-keygen -o` writes: `# created: …` and `# public key: …`
 * comment lines, then the `AGE-SECRET-KEY-1…` line), or of one identity on its own: blank lines and lines
 * starting with `#` are skipped, every other line must be an identity. Several identities are allowed (key
 * rotation): `age -i` tries each.
 *
 * @returns The identities, in file order, or which line (1-based) is not one, or `none` when there is none.
 */
export function parseIdentities(
  s: string,
): { identities: string[] } | { wrongLine: number } | { none: true } {
  const identities: string[] = [];
  for (const [i, raw] of s.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (!isAgeIdentity(line)) return { wrongLine: i + 1 };
    identities.push(line);
  }
  return identities.length === 0 ? { none: true } : { identities };
}

/** Whether a text holds secret key material (an age identity or a PEM block), so must never be shown. */
export function looksLikeSecretKey(s: string): boolean {
  return s.toUpperCase().includes("AGE-SECRET-KEY-") || s.includes("-----BEGIN");
}

/**
 * The recipients of a comma-separated list (spaces around commas allowed).
 *
 * @returns The recipients, or the first entry that is not one (as the problem to report).
 */
export function parseRecipients(s: string): { recipients: string[] } | { wrong: string } {
  const recipients = s.split(",").map((r) => r.trim()).filter((r) => r !== "");
  const bad = recipients.find((r) => !isAgeRecipient(r));
  return bad === undefined ? { recipients } : { wrong: bad };
}
