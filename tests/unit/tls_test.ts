import { assert, assertEquals, assertRejects } from "./assert.ts";
import { clientSsl, peerNameProblem, readTls, TlsConfigError, tlsProblem } from "../../src/mysql/tls.ts";
import { makeTestPki, type TestPki } from "../integration/harness/tls.ts";

/** Certificates made once for every test here (openssl, a temporary directory). */
let pkiPromise: Promise<TestPki> | undefined;
function pki(): Promise<TestPki> {
  pkiPromise ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "autopilot-tls-" });
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    return await makeTestPki(dir, ["n1", "n2"]);
  })();
  return pkiPromise;
}

const files = (ca: string, cert: string, key: string) => ({ ca, cert, key });
const read = async (f: { ca: string; cert: string; key: string }) => ({
  files: f,
  ca: await Deno.readTextFile(f.ca),
  cert: await Deno.readTextFile(f.cert),
  key: await Deno.readTextFile(f.key),
});

Deno.test("tlsProblem(): a node certificate signed by the CA, with its key, in its validity period passes", async () => {
  const p = await pki();
  assertEquals(tlsProblem(await read(files(p.ca.cert, p.node.cert, p.node.key)), new Date()), undefined);
  const m = await readTls(files(p.ca.cert, p.node.cert, p.node.key));
  assert(m.key.includes("PRIVATE KEY"));
});

Deno.test("tlsProblem(): each bad input is one line naming the file and what is wrong", async () => {
  const p = await pki();
  const now = new Date();
  const cases: [string, { ca: string; cert: string; key: string }, RegExp][] = [
    [
      "wrong key",
      files(p.ca.cert, p.node.cert, p.wrongCa.key),
      /^MYSQL_TLS_CERT \S+node\.pem does not match MYSQL_TLS_KEY \S+wrong-ca-key\.pem/,
    ],
    [
      "expired",
      files(p.ca.cert, p.expired.cert, p.expired.key),
      /^MYSQL_TLS_CERT \S+expired\.pem expired on \d{4}-/,
    ],
    [
      "other CA",
      files(p.ca.cert, p.wrongCa.cert, p.wrongCa.key),
      /^MYSQL_TLS_CERT \S+wrong-ca\.pem \(issued by CN=other-ca\) is not signed by the CA in MYSQL_TLS_CA \S+ca\.pem$/,
    ],
    [
      "key as cert",
      files(p.ca.cert, p.node.key, p.node.key),
      /^MYSQL_TLS_CERT \S+ is not a PEM certificate$/,
    ],
    [
      "cert as key",
      files(p.ca.cert, p.node.cert, p.node.cert),
      /^MYSQL_TLS_KEY \S+ is not a PEM private key/,
    ],
    ["key as CA", files(p.node.key, p.node.cert, p.node.key), /^MYSQL_TLS_CA \S+ holds no PEM certificate$/],
  ];
  for (const [what, f, expected] of cases) {
    const problem = tlsProblem(await read(f), now);
    assert(problem !== undefined && expected.test(problem), `${what}: ${problem}`);
    assert(!problem.includes("\n"), `${what}: one line`);
    assert(!problem.includes("PRIVATE KEY"), `${what}: never the key's text`);
  }
  // Valid now, expired later: the moment is the caller's.
  const later = new Date(Date.now() + 30 * 86_400_000);
  assert(/expired on/.test(tlsProblem(await read(files(p.ca.cert, p.node.cert, p.node.key)), later) ?? ""));
});

Deno.test("readTls(): a file that cannot be read is refused, naming it", async () => {
  const p = await pki();
  const e = await assertRejects(
    () => readTls(files(p.ca.cert, p.node.cert, `${p.dir}/missing-key.pem`)),
    TlsConfigError,
  );
  assertEquals(e.message, `MYSQL_TLS_KEY ${p.dir}/missing-key.pem does not exist`);
  await assertRejects(
    () => readTls(files(p.ca.cert, p.expired.cert, p.expired.key)),
    TlsConfigError,
    "expired",
  );
});

Deno.test("peerNameProblem(): the peer's certificate must name the address or name connected to", async () => {
  const p = await pki();
  const pem = await Deno.readTextFile(p.node.cert);
  for (const host of ["127.0.0.1", "localhost", "n1", "n2"]) {
    assertEquals(peerNameProblem(pem, host), undefined, host);
  }
  for (const host of ["127.0.0.2", "n3", "10.0.0.1"]) {
    assert(peerNameProblem(pem, host)?.includes(`does not name ${host}`), host);
  }
});

Deno.test("clientSsl(): a host name is checked by mysql2 in the handshake (verifyIdentity), an IP address is not", () => {
  const m = { files: files("/ca", "/c", "/k"), ca: "CA", cert: "C", key: "K" };
  const base = { ca: "CA", cert: "C", key: "K", rejectUnauthorized: true } as const;
  assertEquals(clientSsl(m, "db-1.example"), { ...base, verifyIdentity: true });
  assertEquals(clientSsl(m, "localhost"), { ...base, verifyIdentity: true });
  // mysql2 would check an IP address against "localhost" (it sends no server name for one): checked after.
  assertEquals(clientSsl(m, "10.0.0.12"), base);
  assertEquals(clientSsl(m, "::1"), base);
});
