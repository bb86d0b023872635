/**
 * scripts/setup.sh on throwaway keys, writing to a temporary env file (never the repository's `_env`): what it
 * writes must load through `loadConfig` into the very key and its MD5 fingerprint, and a re-run must keep every
 * line that is not its own.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { loadConfig } from "../../src/config.ts";
import { MantaStore } from "../../src/storage/manta.ts";
import { REPO_ROOT } from "./harness/mod.ts";

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

Deno.test("setup.sh writes a 0600 env file whose key and key id load back exactly, and re-runs keep other lines", async () => {
  await withDir(async (dir) => {
    for (const format of ["openssh", "pem"]) {
      const key = `${dir}/id_${format}`;
      const md5 = await keygen(key, "-N", "", ...(format === "pem" ? ["-m", "PEM"] : []));
      const original = await Deno.readTextFile(key);
      const envFile = `${dir}/_env_${format}`;
      await Deno.writeTextFile(envFile, UNRELATED, { mode: 0o644 });

      const first = await setup([
        "--no-docker-check",
        "--env-file",
        envFile,
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

      const vars = await readEnvFile(envFile);
      assertEquals(vars.MANTA_PRIVATE_KEY.includes("\n"), false);
      const config = loadConfig((n) => vars[n], { hostname: () => "test-host" });
      const manta = config.storage.manta!;
      assertEquals(config.storage.backend, "manta");
      assertEquals(manta.privateKey.reveal(), original, "the decoded key is the file, byte for byte");
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

      // A re-run with other settings replaces only its own lines, without duplicating them.
      await Deno.writeTextFile(envFile, "EXTRA=added by hand\n", { append: true });
      const again = await setup(["--no-docker-check", "--env-file", envFile, "--key", key], {
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
      assertEquals(lines.filter((l) => l.startsWith("MANTA_PRIVATE_KEY=")).length, 1);
      assertEquals(lines.filter((l) => l.startsWith("SNAPSHOT_BACKEND=")), ["SNAPSHOT_BACKEND=manta"]);
      const reloaded = loadConfig((n) => ({ ...vars, ...readLines(lines) })[n], { hostname: () => "h" });
      assertEquals(reloaded.storage.manta!.subuser, "backup");
      assertEquals(reloaded.storage.manta!.bucket, "/acct2/stor");
      assertEquals(reloaded.storage.manta!.privateKey.reveal(), original);
      assertEquals((await Deno.stat(envFile)).mode! & 0o777, 0o600);
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
    const base = ["--no-docker-check", "--env-file", envFile];
    const cases: [string[], Record<string, string>, string][] = [
      [[...base, key], {}, "MANTA_USER is not set"],
      [[...base, "--user", "acct", `${dir}/missing`], {}, "cannot read the private key file"],
      [[...base, "--user", "acct", locked], {}, "cannot be read without a passphrase"],
      [[...base, "--user", "acct", `${key}.pub`], {}, "is not a PEM or OpenSSH private key"],
      [[...base, "--user", "acct", "--url", "ftp://x", key], {}, "must be an http:// or https:// URL"],
      [[...base, "--user", "acct", "--bucket", "stor/x", key], {}, "must be a Manta path"],
      [["--env-file", envFile, "--user", "acct", key], { PATH: `${dir}/empty-bin` }, "Docker is required"],
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
  for (const option of ["--env-file", "--no-docker-check", "--user", "--key", "MANTA_KEY_ID", "'#'"]) {
    assert(r.out.includes(option), `--help does not mention ${option}`);
  }
});
