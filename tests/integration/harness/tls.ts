/**
 * Throwaway certificates for tests, made with `openssl` in a directory of the caller's: a CA, node
 * certificates signed by it (SAN `IP:127.0.0.1`, `DNS:localhost` and the node names), an expired one, and one
 * signed by another CA. Unit tests of the certificate checks use them too (they only need `openssl`).
 *
 * @module
 */
import { runOk } from "./proc.ts";
import { systemTool } from "./tools.ts";

/** A certificate and its key, as file paths. */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

/** What {@link makeTestPki} wrote. */
export interface TestPki {
  readonly dir: string;
  /** The CA's certificate (and key, to sign more). */
  readonly ca: CertFiles;
  /** A certificate for every node, signed by the CA. */
  readonly node: CertFiles;
  /** Signed by the CA, but expired yesterday. */
  readonly expired: CertFiles;
  /** Valid, but signed by another CA. */
  readonly wrongCa: CertFiles;
  /** Signed by the CA, but naming no node: only `DNS:elsewhere.invalid`. */
  readonly misnamed: CertFiles;
  /** The CA that signed {@link TestPki.wrongCa}. */
  readonly otherCa: CertFiles;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await runOk(await systemTool("openssl", "openssl"), args, { cwd });
}

async function makeCa(dir: string, name: string): Promise<CertFiles> {
  const ca = { cert: `${dir}/${name}.pem`, key: `${dir}/${name}-key.pem` };
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    ca.key,
    "-out",
    ca.cert,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
  return ca;
}

async function makeLeaf(
  dir: string,
  name: string,
  ca: CertFiles,
  sans: readonly string[],
  expired = false,
): Promise<CertFiles> {
  const leaf = { cert: `${dir}/${name}.pem`, key: `${dir}/${name}-key.pem` };
  const csr = `${dir}/${name}.csr`;
  const ext = `${dir}/${name}.ext`;
  await openssl([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    leaf.key,
    "-out",
    csr,
    "-subj",
    `/CN=${name}`,
  ], dir);
  await Deno.writeTextFile(
    ext,
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n` +
      `extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${sans.join(",")}\n`,
  );
  // An expired certificate: valid from two days ago to yesterday. `openssl x509` cannot back-date (its
  // -not_before/-not_after need OpenSSL 3.4; Debian 12 has 3.0), `openssl ca` can (-startdate/-enddate).
  if (expired) {
    const conf = `${dir}/${name}-ca.cnf`;
    await Deno.mkdir(`${dir}/${name}-db`, { recursive: true });
    await Deno.writeTextFile(`${dir}/${name}-db/index.txt`, "");
    await Deno.writeTextFile(`${dir}/${name}-db/serial`, "1000\n");
    await Deno.writeTextFile(
      conf,
      [
        "[ca]",
        "default_ca = test",
        "[test]",
        `dir = ${dir}/${name}-db`,
        "database = $dir/index.txt",
        "serial = $dir/serial",
        "new_certs_dir = $dir",
        "default_md = sha256",
        "policy = any",
        "[any]",
        "commonName = supplied",
        "",
      ].join("\n"),
    );
    const day = (offset: number) =>
      new Date(Date.now() + offset * 86_400_000).toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z";
    await openssl([
      "ca",
      "-batch",
      "-config",
      conf,
      "-cert",
      ca.cert,
      "-keyfile",
      ca.key,
      "-in",
      csr,
      "-out",
      leaf.cert,
      "-startdate",
      day(-2),
      "-enddate",
      day(-1),
      "-extfile",
      ext,
      "-notext",
    ], dir);
  } else {
    await openssl([
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      ca.cert,
      "-CAkey",
      ca.key,
      "-CAcreateserial",
      "-out",
      leaf.cert,
      "-days",
      "2",
      "-sha256",
      "-extfile",
      ext,
    ], dir);
  }
  return leaf;
}

/**
 * Makes a CA and the certificates tests use, in `dir` (which must exist). One node certificate serves every
 * node: its SAN names them all.
 *
 * @param names Node names for the SAN (DNS), besides `localhost`.
 * @param addresses Node addresses for the SAN (IP), besides `127.0.0.1`.
 */
export async function makeTestPki(
  dir: string,
  names: readonly string[] = [],
  addresses: readonly string[] = [],
): Promise<TestPki> {
  const sans = [
    "IP:127.0.0.1",
    "DNS:localhost",
    ...addresses.map((a) => `IP:${a}`),
    ...names.map((n) => `DNS:${n}`),
  ];
  const ca = await makeCa(dir, "ca");
  const otherCa = await makeCa(dir, "other-ca");
  const [node, expired, wrongCa, misnamed] = await Promise.all([
    makeLeaf(dir, "node", ca, sans),
    makeLeaf(dir, "expired", ca, sans, true),
    makeLeaf(dir, "wrong-ca", otherCa, sans),
    makeLeaf(dir, "misnamed", ca, ["DNS:elsewhere.invalid"]),
  ]);
  return { dir, ca, node, expired, wrongCa, misnamed, otherCa };
}
