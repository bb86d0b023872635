/**
 * TLS between the servers and for autopilot's own connections to peers: the node's certificate, its key and
 * the CA (MYSQL_TLS_CA, MYSQL_TLS_CERT, MYSQL_TLS_KEY), checked before they are used, and the client side of a
 * connection to a peer (mysql2's `ssl` option, and the check that the peer's certificate names its address).
 *
 * The checks are pure over the PEM texts ({@link tlsProblem}); {@link readTls} reads the files. The key's text
 * never leaves this module except into mysql2's secure context: messages name files, never contents.
 *
 * node:crypto references: `X509Certificate` (`checkPrivateKey`, `verify`, `checkIssued`, `validFromDate`,
 * `validToDate`, `checkIP`, `checkHost`), `createPrivateKey`.
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import type { TlsFiles } from "../config.ts";

/** The PEM texts of the TLS files. */
export interface TlsMaterial {
  readonly files: TlsFiles;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** A TLS file that cannot be read or does not fit the others. The message is one line. */
export class TlsConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TlsConfigError";
  }
}

/**
 * What is wrong with the TLS material, as one line, or `undefined` when the certificate is a valid PEM
 * certificate, matches its key, is within its validity period at `now`, and is signed by (one of) the CA
 * certificate(s).
 *
 * @param m The PEM texts (and their paths, for the message).
 * @param now The moment the validity period is checked against.
 */
export function tlsProblem(m: TlsMaterial, now: Date): string | undefined {
  const f = m.files;
  let cas: X509Certificate[];
  try {
    cas = pemBlocks(m.ca, "CERTIFICATE").map((pem) => new X509Certificate(pem));
  } catch {
    cas = [];
  }
  if (cas.length === 0) return `MYSQL_TLS_CA ${f.ca} holds no PEM certificate`;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(m.cert);
  } catch {
    return `MYSQL_TLS_CERT ${f.cert} is not a PEM certificate`;
  }
  let key;
  try {
    key = createPrivateKey(m.key);
  } catch {
    return `MYSQL_TLS_KEY ${f.key} is not a PEM private key (or it is encrypted: the server cannot ask for a passphrase)`;
  }
  if (!cert.checkPrivateKey(key)) {
    return `MYSQL_TLS_CERT ${f.cert} does not match MYSQL_TLS_KEY ${f.key}: they are not a certificate and its key`;
  }
  if (cert.validToDate.getTime() <= now.getTime()) {
    return `MYSQL_TLS_CERT ${f.cert} expired on ${cert.validToDate.toISOString()}: issue a new one`;
  }
  if (cert.validFromDate.getTime() > now.getTime()) {
    return `MYSQL_TLS_CERT ${f.cert} is not valid before ${cert.validFromDate.toISOString()} (is the clock right?)`;
  }
  const signer = cas.find((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
  if (!signer) {
    return `MYSQL_TLS_CERT ${f.cert} (issued by ${oneLine(cert.issuer)}) is not signed by the CA in ` +
      `MYSQL_TLS_CA ${f.ca}`;
  }
  if (signer.validToDate.getTime() <= now.getTime()) {
    return `MYSQL_TLS_CA ${f.ca} expired on ${signer.validToDate.toISOString()}: issue a new CA and certificates`;
  }
  return undefined;
}

/**
 * Reads the TLS files.
 *
 * @throws {TlsConfigError} naming the file that cannot be read.
 */
export async function readTlsFiles(files: TlsFiles): Promise<TlsMaterial> {
  const read = async (name: string, path: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound
        ? "does not exist"
        : e instanceof Deno.errors.PermissionDenied
        ? "cannot be read (permission denied)"
        : e instanceof Deno.errors.NotCapable
        ? "is outside the directories autopilot may read (put it below /var/lib/autopilot, e.g. " +
          "/var/lib/autopilot/tls/)"
        : `cannot be read (${(e as Error).name})`;
      throw new TlsConfigError(`${name} ${path} ${why}`);
    }
  };
  const [ca, cert, key] = await Promise.all([
    read("MYSQL_TLS_CA", files.ca),
    read("MYSQL_TLS_CERT", files.cert),
    read("MYSQL_TLS_KEY", files.key),
  ]);
  return { files, ca, cert, key };
}

/**
 * Reads and checks the TLS files (pre-start refuses to go on without them).
 *
 * @throws {TlsConfigError} with the one line {@link tlsProblem} gives, or naming a file that cannot be read.
 */
export async function readTls(files: TlsFiles, now: Date = new Date()): Promise<TlsMaterial> {
  const m = await readTlsFiles(files);
  const problem = tlsProblem(m, now);
  if (problem !== undefined) throw new TlsConfigError(problem);
  return m;
}

/** mysql2's `ssl` option for a connection to a peer: its chain checked against the CA, this node's cert sent. */
export interface ClientSsl {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  readonly rejectUnauthorized: true;
  /**
   * mysql2 checks that the certificate names the host during the TLS handshake, before it sends the login
   * (node:tls `checkServerIdentity`). Set only for a host name: mysql2 (3.24) sends no server name for an IP
   * address and checks none for it (it would check "localhost"), and takes no `checkServerIdentity` of the
   * caller's, so an IP address is checked after the login ({@link peerNameProblem}).
   */
  readonly verifyIdentity?: true;
}

/** The `ssl` option of mysql2 for these files, for a connection to `host` (an IP address or a name). */
export function clientSsl(m: TlsMaterial, host: string): ClientSsl {
  return {
    ca: m.ca,
    cert: m.cert,
    key: m.key,
    rejectUnauthorized: true,
    ...(isIP(host) === 0 ? { verifyIdentity: true } : {}),
  };
}

/**
 * Whether a peer's certificate names the address it was reached on: an IP address must be in its SAN IP
 * entries, a name in its SAN DNS entries (wildcards as RFC 6125 allows). What is wrong, or `undefined`.
 *
 * @param der The peer's certificate (DER, as a TLS socket's `getPeerCertificate().raw`), or PEM.
 * @param host The address or name autopilot connected to.
 */
export function peerNameProblem(der: Uint8Array | string, host: string): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    return `the certificate presented by ${host} cannot be read`;
  }
  const ok = isIP(host) ? cert.checkIP(host) !== undefined : cert.checkHost(host) !== undefined;
  return ok
    ? undefined
    : `the certificate presented by ${host} does not name ${host} (its names: ${
      cert.subjectAltName ?? oneLine(cert.subject)
    })`;
}

function pemBlocks(text: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, "g");
  return [...text.matchAll(re)].map((m) => m[0] + "\n");
}

function oneLine(s: string): string {
  return s.replaceAll("\n", ", ");
}
