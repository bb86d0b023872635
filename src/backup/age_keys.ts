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
 * The recipients of a comma-separated list (spaces around commas allowed).
 *
 * @returns The recipients, or the first entry that is not one (as the problem to report).
 */
export function parseRecipients(s: string): { recipients: string[] } | { wrong: string } {
  const recipients = s.split(",").map((r) => r.trim()).filter((r) => r !== "");
  const bad = recipients.find((r) => !isAgeRecipient(r));
  return bad === undefined ? { recipients } : { wrong: bad };
}
