/**
 * scripts/setup.sh on throwaway keys, writing to a temporary env file and secrets directory (never the
 * repository's `_env` or `secrets/`): the settings it writes and the key file it copies (MANTA_PRIVATE_KEY_FILE,
 * as compose.manta.yml hands it over) must load through `loadConfig` into the very key and its MD5
 * fingerprint, and a re-run must keep every line that is not its own.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { loadConfig } from "../../src/config.ts";
import { MantaStore } from "../../src/storage/manta.ts";
import { REPO_ROOT } from "./harness/mod.ts";

const existsSync = (path: string) => {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
};

const BASH = "/bin/bash";
const SCRIPT = `${REPO_ROOT}/scripts/setup.sh`;

interface Run {
  readonly code: number;
  readonly out: string;
}

async function setup(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const out = await new Deno.Command(BASH, {
    args: [SCRIPT, ...args],
    clearEnv: true,
    env: { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: "/nonexistent", ...env },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "autopilot-setup-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function keygen(path: string, ...extra: string[]): Promise<string> {
  const gen = await new Deno.Command("ssh-keygen", {
    args: ["-q", "-t", "rsa", "-b", "2048", "-C", "setup test", "-f", path, ...extra],
    stdout: "null",
  }).output();
  assert(gen.success);
  const fp = await new Deno.Command("ssh-keygen", { args: ["-E", "md5", "-lf", `${path}.pub`] }).output();
  return /MD5:([0-9a-f:]+)/.exec(new TextDecoder().decode(fp.stdout))![1];
}

/** The env file as docker compose's env_file reads it: NAME=VALUE lines, comments and blanks skipped. */
async function readEnvFile(path: string): Promise<Record<string, string>> {
  const vars: Record<string, string> = {};
  for (const line of (await Deno.readTextFile(path)).split("\n")) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) vars[m[1]] = m[2];
  }
  return vars;
}

const UNRELATED =
  "# Environment variables for MySQL\nMYSQL_USER=dbuser\nMYSQL_PASSWORD=db pw\nMYSQL_REPL_PASSWORD=pa ss#1\n\n" +
  "MANTA_USER=someone-else\nCONSUL=consul.svc.example.com";
/** The line an older setup.sh wrote: the key on one line, in the env file. */
const OLD_KEY_LINE =
  "MANTA_PRIVATE_KEY=-----BEGIN OPENSSH PRIVATE KEY-----#old#-----END OPENSSH PRIVATE KEY-----#";

/** The configuration a node of compose.manta.yml loads: the env file, and the key from the secret's file. */
function loadAsCompose(vars: Record<string, string>, secretsDir: string) {
  const env: Record<string, string> = { ...vars, MANTA_PRIVATE_KEY_FILE: `${secretsDir}/manta_private_key` };
  return loadConfig((n) => env[n], { hostname: () => "test-host" });
}

Deno.test("setup.sh writes a 0600 env file and a 0600 key file that load back exactly, and re-runs keep other lines", async () => {
  await withDir(async (dir) => {
    for (const format of ["openssh", "pem"]) {
      const key = `${dir}/id_${format}`;
      const md5 = await keygen(key, "-N", "", ...(format === "pem" ? ["-m", "PEM"] : []));
      const original = await Deno.readTextFile(key);
      const envFile = `${dir}/_env_${format}`;
      const secrets = `${dir}/secrets_${format}`;
      await Deno.writeTextFile(envFile, `${UNRELATED}\n${OLD_KEY_LINE}`, { mode: 0o644 });

      const first = await setup([
        "--no-docker-check",
        "--env-file",
        envFile,
        "--secrets-dir",
        secrets,
        "--user",
        "acct",
        "--url",
        "http://manta.example:8080",
        "--bucket",
        "/acct/stor/snapshots",
        key,
      ]);
      assertEquals(first.code, 0, first.out);
      assert(first.out.includes(md5), first.out);
      assert(!first.out.includes(original.split("\n")[1]), "the key was printed");
      assertEquals((await Deno.stat(envFile)).mode! & 0o777, 0o600);
      // The key: copied byte for byte into the secrets directory (made 0700), 0600; nowhere in the env file.
      assertEquals((await Deno.stat(secrets)).mode! & 0o777, 0o700);
      assertEquals((await Deno.stat(`${secrets}/manta_private_key`)).mode! & 0o777, 0o600);
      assertEquals(await Deno.readTextFile(`${secrets}/manta_private_key`), original);
      assertEquals([...Deno.readDirSync(secrets)].map((e) => e.name), ["manta_private_key"]);

      const vars = await readEnvFile(envFile);
      assertEquals(vars.MANTA_PRIVATE_KEY, undefined, "the older setup.sh's key line is removed");
      assert(!(await Deno.readTextFile(envFile)).includes("PRIVATE KEY"), "the key is in the env file");
      const config = loadAsCompose(vars, secrets);
      const manta = config.storage.manta!;
      assertEquals(config.storage.backend, "manta");
      // The secret file's one trailing newline is dropped, as for every secret (README, "Secrets").
      assertEquals(manta.privateKey.reveal(), original.replace(/\n$/, ""), "the key read is the file's");
      assertEquals(manta.keyId, md5);
      assertEquals([manta.user, manta.url, manta.bucket], [
        "acct",
        "http://manta.example:8080",
        "/acct/stor/snapshots",
      ]);
      new MantaStore(manta); // the store accepts the key and agrees on its fingerprint

      const text = await Deno.readTextFile(envFile);
      assert(
        text.startsWith(UNRELATED.replace("MANTA_USER=someone-else", "MANTA_USER=acct") + "\n"),
        `unrelated lines changed:\n${text}`,
      );

      // A re-run with other settings replaces only its own lines and the key, without duplicating them.
      await Deno.writeTextFile(envFile, "EXTRA=added by hand\n", { append: true });
      await Deno.writeTextFile(`${secrets}/manta_private_key`, "stale");
      const again = await setup([
        "--no-docker-check",
        "--env-file",
        envFile,
        "--secrets-dir",
        secrets,
        "--key",
        key,
      ], {
        MANTA_USER: "acct2",
        MANTA_SUBUSER: "backup",
      });
      assertEquals(again.code, 0, again.out);
      const lines = (await Deno.readTextFile(envFile)).split("\n");
      for (const line of UNRELATED.split("\n").filter((l) => !l.startsWith("MANTA_USER="))) {
        assert(lines.includes(line), `lost '${line}'`);
      }
      assert(lines.includes("EXTRA=added by hand"));
      assertEquals(lines.filter((l) => l.startsWith("MANTA_USER=")), ["MANTA_USER=acct2"]);
      assertEquals(lines.filter((l) => l.startsWith("MANTA_PRIVATE_KEY")), []);
      assertEquals(lines.filter((l) => l.startsWith("SNAPSHOT_BACKEND=")), ["SNAPSHOT_BACKEND=manta"]);
      const reloaded = loadAsCompose({ ...vars, ...readLines(lines) }, secrets);
      assertEquals(reloaded.storage.manta!.subuser, "backup");
      assertEquals(reloaded.storage.manta!.bucket, "/acct2/stor");
      assertEquals(await Deno.readTextFile(`${secrets}/manta_private_key`), original);
      assertEquals((await Deno.stat(envFile)).mode! & 0o777, 0o600);
      assertEquals((await Deno.stat(`${secrets}/manta_private_key`)).mode! & 0o777, 0o600);
    }
  });
});

function readLines(lines: string[]): Record<string, string> {
  return Object.fromEntries(
    lines.map((l) => /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(l)).filter((m) => m !== null).map((
      m,
    ) => [m![1], m![2]]),
  );
}

Deno.test("setup.sh refuses bad input with one line and leaves the env file untouched", async () => {
  await withDir(async (dir) => {
    const key = `${dir}/id`;
    await keygen(key, "-N", "");
    const locked = `${dir}/locked`;
    await keygen(locked, "-N", "a passphrase");
    const envFile = `${dir}/_env`;
    await Deno.writeTextFile(envFile, UNRELATED);
    const before = await Deno.readFile(envFile);
    const secrets = `${dir}/secrets`;
    const base = ["--no-docker-check", "--env-file", envFile, "--secrets-dir", secrets];
    const cases: [string[], Record<string, string>, string][] = [
      [[...base, key], {}, "MANTA_USER is not set"],
      [[...base, "--user", "acct", `${dir}/missing`], {}, "cannot read the private key file"],
      [[...base, "--user", "acct", locked], {}, "cannot be read without a passphrase"],
      [[...base, "--user", "acct", `${key}.pub`], {}, "is not a PEM or OpenSSH private key"],
      [[...base, "--user", "acct", "--url", "ftp://x", key], {}, "must be an http:// or https:// URL"],
      [[...base, "--user", "acct", "--bucket", "stor/x", key], {}, "must be a Manta path"],
      [["--env-file", envFile, "--secrets-dir", secrets, "--user", "acct", key], {
        PATH: `${dir}/empty-bin`,
      }, "Docker is required"],
      [
        [...base, "--user", "acct", "--secrets-dir", `${dir}/no/such`, key],
        {},
        "cannot create the secrets directory",
      ],
      [[...base, "--frobnicate"], {}, "unknown option --frobnicate"],
    ];
    await Deno.mkdir(`${dir}/empty-bin`);
    for (const [args, env, message] of cases) {
      const r = await setup(args, env);
      assertEquals(r.code, 1, `${args.join(" ")}: ${r.out}`);
      const lines = r.out.trim().split("\n");
      assertEquals(lines.length, 1, r.out);
      assert(lines[0].startsWith("setup.sh: ") && lines[0].includes(message), r.out);
      assertEquals(await Deno.readFile(envFile), before, `${args.join(" ")} touched the env file`);
      assert(
        !existsSync(secrets) || [...Deno.readDirSync(secrets)].length === 0,
        `${args.join(" ")} wrote a key`,
      );
    }
    assertEquals(
      [...Deno.readDirSync(dir)].filter((e) => e.name.startsWith("._env")),
      [],
      "temporary file left",
    );
  });
});

Deno.test("setup.sh --help explains the options", async () => {
  const r = await setup(["--help"]);
  assertEquals(r.code, 0);
  for (
    const option of [
      "--env-file",
      "--secrets-dir",
      "--no-docker-check",
      "--user",
      "--key",
      "MANTA_KEY_ID",
      "'#'",
    ]
  ) {
    assert(r.out.includes(option), `--help does not mention ${option}`);
  }
});
