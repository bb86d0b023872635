/**
 * What a node says when Consul refuses it (src/consul.ts `aclRefusal`, `tlsFailure`), the HTTPS client's
 * options (`httpClientOptions`) and the ACL policy (src/consul_policy.ts), on plain values. The reasons are
 * Consul 1.14.0's own texts (acl/errors.go), as seen from a real agent in tests/integration/consul_secured_test.ts.
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import {
  aclRefusal,
  CONSUL_TLS_FILE_DIRS,
  ConsulTlsSetupError,
  httpClientOptions,
  tlsFailure,
  transportFailure,
  unreadableTlsFile,
  withClientCertHint,
} from "../../src/consul.ts";
import { consulPolicyHcl, consulPolicyRules, defaultConsulPolicy } from "../../src/consul_policy.ts";
import { withConsulPolicy } from "../../scripts/gen_docs.ts";
import { loadConfig, SECRET_FILE_DIRS } from "../../src/config.ts";

const DENIED_WRITE =
  "Permission denied: token with AccessorID 'b1e5c0de-0000-4000-8000-000000000001' lacks " +
  `permission 'key:write' on "mysql-backup-running"`;

Deno.test("aclRefusal() names the operation, the key and the permission the token lacks, and the README's policy", () => {
  assertEquals(
    aclRefusal(["lock acquire", 'key "mysql-backup-running"'], DENIED_WRITE, true),
    'Consul refused lock acquire on key "mysql-backup-running": the token in CONSUL_HTTP_TOKEN lacks key:write ' +
      'on "mysql-backup-running" (a key_prefix rule with policy = "write"); give the token the policy in README, ' +
      '"Consul ACL policy"',
  );
  const line = aclRefusal(
    ["session create", "a session"],
    DENIED_WRITE.replace("key:write", "session:write")
      .replace(' on "mysql-backup-running"', ' on "node-1"'),
    true,
  );
  assert(line.includes('lacks session:write on "node-1" (a session_prefix rule'), line);
  assert(!line.includes("b1e5c0de"), "the accessor id is left out");
});

Deno.test("aclRefusal() says when no token was sent, and when Consul does not know the one sent", () => {
  const anon = aclRefusal(
    ["kv get recurse", 'the keys under "mysql-"'],
    "Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' lacks permission " +
      `'key:read' on "mysql-"`,
    false,
  );
  assertEquals(
    anon,
    'Consul refused kv get recurse on the keys under "mysql-": no token was sent (CONSUL_HTTP_TOKEN is unset) ' +
      'and the anonymous token lacks key:read on "mysql-" (a key_prefix rule with policy = "read"); give the ' +
      'token the policy in README, "Consul ACL policy"',
  );
  assertEquals(
    aclRefusal(["kv get", 'key "mysql-primary"'], "ACL not found", true),
    'Consul refused kv get on key "mysql-primary": Consul does not know the token in CONSUL_HTTP_TOKEN ' +
      '(ACL not found): set it to a token Consul has, with the policy in README, "Consul ACL policy"',
  );
  // An older agent's bare "Permission denied" still names the operation and the target.
  assertEquals(
    aclRefusal(["kv put", 'key "mysql-last-backup"'], "Permission denied", true),
    'Consul refused kv put on key "mysql-last-backup": the token in CONSUL_HTTP_TOKEN is not allowed to; give ' +
      'the token the policy in README, "Consul ACL policy"',
  );
});

Deno.test("tlsFailure() turns an untrusted certificate into one line saying which variable to set", () => {
  const raw = "error sending request for url (https://127.0.0.1:35513/v1/kv/x): client error (Connect): " +
    "invalid peer certificate: UnknownIssuer";
  const url = "https://127.0.0.1:35513";
  assertEquals(
    transportFailure(new TypeError("fetch failed", { cause: new Error(raw) }), 2000, url),
    "TLS: the certificate https://127.0.0.1:35513 presented is not trusted (UnknownIssuer): set CONSUL_CACERT " +
      "to the PEM file of the CA that signed it",
  );
  assertEquals(
    tlsFailure(raw, url, "/tmp/ca.pem"),
    "TLS: the certificate https://127.0.0.1:35513 presented is not trusted (UnknownIssuer): CONSUL_CACERT " +
      "(/tmp/ca.pem) is not the CA that signed it: set it to the PEM file of the one that did",
  );
  assert(tlsFailure("invalid peer certificate: NotValidForName", url)!.includes("does not name the host"));
  assert(tlsFailure("invalid peer certificate: Expired", url)!.includes("validity period"));
  assertEquals(
    tlsFailure("received fatal alert: CertificateRequired", url),
    "TLS: https://127.0.0.1:35513 refused this client's certificate (CertificateRequired): it verifies its " +
      "clients, so set CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY to a certificate signed by a CA it trusts",
  );
  assertEquals(tlsFailure("tcp connect error: Connection refused (os error 111)", url), undefined);
});

Deno.test("httpClientOptions() adds the CA to the trusted roots and presents a client certificate only with its key", () => {
  const tls = { scheme: "https", host: "consul" } as const;
  assertEquals(httpClientOptions({ ca: "CA" }, tls), { caCerts: ["CA"] });
  assertEquals(httpClientOptions({ ca: "CA", cert: "C", key: "K" }, tls), {
    caCerts: ["CA"],
    cert: "C",
    key: "K",
  });
  assertEquals(httpClientOptions({ cert: "C" }, tls), {});
  assertThrows(
    () => httpClientOptions({ ca: "CA" }, { scheme: "http", host: "consul" }),
    ConsulTlsSetupError,
  );
});

Deno.test("unreadableTlsFile(): one line naming the variable and the path, and where the file may be", () => {
  assertEquals(
    unreadableTlsFile(
      "CONSUL_CACERT",
      "/etc/consul/ca.pem",
      new Deno.errors.NotCapable(
        'Requires read access to "/etc/consul/ca.pem", run again with the --allow-read flag',
      ),
    ),
    "CONSUL_CACERT /etc/consul/ca.pem is outside the directories autopilot may read (/run/secrets, " +
      "/var/lib/autopilot, /var/lib/mysql, /tmp): put it in one of them",
  );
  assertEquals(
    unreadableTlsFile(
      "CONSUL_CLIENT_KEY",
      "/tmp/k.pem",
      new Deno.errors.NotFound("No such file (os error 2)"),
    ),
    "CONSUL_CLIENT_KEY /tmp/k.pem does not exist",
  );
  assertEquals(
    unreadableTlsFile("CONSUL_CLIENT_CERT", "/tmp/c.pem", new Deno.errors.PermissionDenied("denied")),
    "CONSUL_CLIENT_CERT /tmp/c.pem cannot be read (permission denied: check the file's owner and mode)",
  );
  assertEquals(CONSUL_TLS_FILE_DIRS, SECRET_FILE_DIRS, "the same readable directories as a secret's file");
});

const load = (env: Record<string, string>) =>
  loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "x", ...env })[n], { hostname: () => "h" });

Deno.test("the ACL policy: read on the cluster's prefix, write on exactly the keys autopilot writes", () => {
  const rules = consulPolicyRules(load({}));
  const writes = rules.filter((r) => r.kind.startsWith("key") && r.policy === "write").map((r) => r.name);
  assertEquals(writes, [
    "mysql-primary",
    "mysql-failover-lock",
    "mysql-backup-running",
    "mysql-last-backup",
    "mysql-last-binlog",
    "mysql-last-verified",
    "mysql-cluster",
    "mysql-binlog-archive",
    "mysql-members/",
  ]);
  assert(!writes.includes("mysql-failover-paused"), "only an operator writes the pause key");
  assertEquals(
    rules.filter((r) => r.kind === "service").map((r) => `${r.name}:${r.policy}`),
    ["mysql:write", "mysql-primary:write", "containerpilot:write"],
  );
  assertEquals(rules.find((r) => r.kind === "session_prefix")?.policy, "write");
  assertEquals(rules.find((r) => r.kind === "node_prefix")?.policy, "read");
});

Deno.test("the ACL policy follows SERVICE_NAME and a key renamed outside the prefix", () => {
  const hcl = consulPolicyHcl(
    load({ SERVICE_NAME: "orders", PRIMARY_KEY: "legacy/primary", FAILOVER_PAUSE_KEY: "ops/pause" }),
  );
  assert(hcl.includes('key_prefix "orders-" { policy = "read" }'), hcl);
  assert(hcl.includes('key "legacy/primary" { policy = "write" }'), hcl);
  assert(hcl.includes('key "ops/pause" { policy = "read" }'), hcl);
  assert(hcl.includes('service "orders-primary" { policy = "write" }'), hcl);
  assert(!hcl.includes('"mysql'), hcl);
});

Deno.test("README's Consul ACL policy is the one src/consul_policy.ts writes (deno task docs)", async () => {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  assertEquals(withConsulPolicy(readme), readme, "run: deno task docs (README's Consul ACL policy is stale)");
  assert(readme.includes(defaultConsulPolicy()), "the policy is in README as it is written");
});

Deno.test("withClientCertHint(): a connection closed over https without a client certificate says what may be missing", () => {
  const https = { scheme: "https", host: "consul" } as const;
  assertEquals(
    withClientCertHint("connection closed", https),
    "connection closed (if Consul verifies its clients, set CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY)",
  );
  assert(withClientCertHint("stream closed because of a broken pipe", https).endsWith("CONSUL_CLIENT_KEY)"));
  assertEquals(
    withClientCertHint("connection closed", { ...https, clientCert: "/c.pem" }),
    "connection closed",
  );
  assertEquals(
    withClientCertHint("connection closed", { scheme: "http", host: "consul" }),
    "connection closed",
  );
  assertEquals(
    withClientCertHint("ECONNREFUSED: refused (os error 111)", https),
    "ECONNREFUSED: refused (os error 111)",
  );
});
