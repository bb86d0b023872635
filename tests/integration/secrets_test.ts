/**
 * Secrets given only as files (the `_FILE` twins, as Docker secrets give them): a real MariaDB node bootstraps
 * with them, and the password texts reach none of the four places an operator or another container could read
 * them from: the process list (every process's argv and environment, sampled from /proc while pre-start
 * initialises the datadir and while a snapshot streams), the log, `autopilot config`, and the binlog (read
 * with mariadb-binlog) and the snapshot itself.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { MysqlClient } from "../../src/mysql/client.ts";
import { Secret } from "../../src/config.ts";
import { nativePasswordHash } from "../../src/mysql/bootstrap.ts";
import { Cluster, type TestNode } from "./cluster.ts";
import { Harness } from "./harness/mod.ts";

/** Texts found nowhere else on the machine, so a hit can only be a leak. */
const PASSWORDS = { repl: "fileRepl-7Qw2zK", app: "fileApp-3Xv9mJ", root: "fileRoot-8Ln4pR" };
const TEXTS = Object.values(PASSWORDS);

/** What a sample of /proc saw: each process's program name, and any process whose argv or environment held a password. */
interface Sampled {
  readonly programs: Set<string>;
  readonly leaks: string[];
}

/**
 * Reads every process's argv and environment from /proc every few milliseconds until stopped: what `ps`
 * (`ps e` for the environment) would show at that moment.
 */
function sampleProcesses(): { stop(): Promise<Sampled> } {
  const programs = new Set<string>();
  const leaks = new Set<string>();
  const dec = new TextDecoder("latin1");
  const read = (path: string) => {
    try {
      return dec.decode(Deno.readFileSync(path));
    } catch {
      return undefined; // gone meanwhile
    }
  };
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const e of Deno.readDirSync("/proc")) {
        if (!/^\d+$/.test(e.name)) continue;
        const argv = read(`/proc/${e.name}/cmdline`);
        if (argv === undefined) continue;
        // a script's name is its interpreter's first argument
        for (const a of argv.split("\0").slice(0, 2)) programs.add(a.split("/").at(-1)!);
        const environ = read(`/proc/${e.name}/environ`) ?? "";
        for (const [part, text] of [["argv", argv], ["environment", environ]]) {
          if (TEXTS.some((t) => text.includes(t))) {
            leaks.add(`the ${part} of ${argv.split("\0")[0]} (pid ${e.name}) holds a password`);
          }
        }
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { programs, leaks: [...leaks] };
    },
  };
}

function assertNoPassword(text: string, where: string): void {
  for (const t of TEXTS) assert(!text.includes(t), `a password is in ${where}`);
}

/** The node's binlogs as mariadb-binlog prints them (row events decoded), after checking their raw bytes. */
async function binlogText(node: TestNode): Promise<string> {
  const binlogs = [...Deno.readDirSync(node.env.MYSQL_DATADIR)].map((e) => e.name).filter((n) =>
    /^mysql-bin\.\d+$/.test(n)
  ).sort().map((n) => `${node.env.MYSQL_DATADIR}/${n}`);
  assert(binlogs.length > 0, `no binlog on ${node.name}`);
  for (const file of binlogs) {
    assertNoPassword(new TextDecoder("latin1").decode(await Deno.readFile(file)), file);
  }
  const out = await new Deno.Command("mariadb-binlog", {
    args: ["--no-defaults", "--base64-output=decode-rows", "--verbose", "--verbose", ...binlogs],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

/** Checks every stored snapshot, decompressed: no password in its bytes. Returns how many there are. */
async function assertSnapshotsClean(c: Cluster): Promise<number> {
  const stored = [...Deno.readDirSync(c.snapshots)].map((e) => e.name).filter((n) =>
    n.endsWith(".xbstream.zst")
  );
  for (const name of stored) {
    const raw = await new Deno.Command("zstd", {
      args: ["-q", "-d", "-c", `${c.snapshots}/${name}`],
      stdout: "piped",
    }).output();
    assertEquals(raw.code, 0);
    assertNoPassword(new TextDecoder("latin1").decode(raw.stdout), name);
  }
  return stored.length;
}

Deno.test("secrets given only as _FILE files work and reach no process list, log, autopilot config or binlog", async (t) => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  // Docker secrets: one file each, mode 0600, ending in the newline `echo` adds.
  const dir = `${h.dir}/run-secrets`;
  await Deno.mkdir(dir, { mode: 0o700 });
  for (const [name, text] of Object.entries(PASSWORDS)) {
    await Deno.writeTextFile(`${dir}/${name}`, `${text}\n`, { mode: 0o600 });
  }
  for (const node of [n1, n2]) {
    for (const name of ["MYSQL_REPL_PASSWORD", "MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD"]) {
      delete node.env[name];
    }
    Object.assign(node.env, {
      MYSQL_REPL_PASSWORD_FILE: `${dir}/repl`,
      MYSQL_PASSWORD_FILE: `${dir}/app`,
      MYSQL_ROOT_PASSWORD_FILE: `${dir}/root`,
    });
    assertNoPassword(JSON.stringify(node.env), "the node's environment");
  }
  const logs: string[] = [];

  await t.step("the node bootstraps, and no process shows a password meanwhile", async () => {
    const sampler = sampleProcesses();
    let seen: Sampled;
    try {
      const pre = await c.preStart(n1);
      logs.push(pre.stdout, pre.stderr);
      assertEquals(pre.code, 0, pre.stderr);
      await c.startMysqld(n1);
      const health = await c.run(n1, ["health"]);
      logs.push(health.stdout, health.stderr);
      assertEquals(health.code, 0, health.stderr);
    } finally {
      seen = await sampler.stop();
    }
    assertEquals(seen.leaks, []);
    // The sample saw the child that pre-start runs (else it proves nothing).
    assert(seen.programs.has("mariadb-install-db"), "the sample missed mariadb-install-db");
  });

  await t.step("the passwords read from the files are the accounts' passwords", async () => {
    for (const [user, password] of [["app", PASSWORDS.app], ["repl", PASSWORDS.repl]]) {
      const db = await MysqlClient.connect({
        host: n1.address,
        port: 3306,
        user,
        password: new Secret(password),
        connectTimeoutMs: 2000,
      });
      await db.close();
    }
    // root@localhost: the hash of the file's text less its newline, next to unix_socket.
    const [root] = await c.sql(
      n1,
      "SELECT Priv FROM mysql.global_priv WHERE User='root' AND Host='localhost'",
    );
    const priv = JSON.stringify(root.Priv);
    assert(priv.includes(nativePasswordHash(PASSWORDS.root)), priv);
    assert(!priv.includes(nativePasswordHash(`${PASSWORDS.root}\n`)));
  });

  await t.step("no process shows a password while a snapshot streams", async () => {
    const sampler = sampleProcesses();
    let seen: Sampled;
    try {
      // a name of its own: the bootstrap's snapshot may be from this very second
      const backup = await c.run(n1, ["backup", "now"], {
        BACKUP_NAME: "mysql-backup-now-%Y-%m-%dT%H-%M-%SZ",
      });
      logs.push(backup.stdout, backup.stderr);
      assertEquals(backup.code, 0, backup.stderr);
    } finally {
      seen = await sampler.stop();
    }
    assertEquals(seen.leaks, []);
    assert(seen.programs.has("mariabackup"), "the sample missed mariabackup");
  });

  await t.step("autopilot config redacts them and names their files", async () => {
    const text = await c.run(n1, ["config"]);
    assertEquals(text.code, 0, text.stderr);
    assertNoPassword(text.stdout + text.stderr, "autopilot config");
    for (
      const [name, file] of [["MYSQL_REPL_PASSWORD", "repl"], ["MYSQL_PASSWORD", "app"], [
        "MYSQL_ROOT_PASSWORD",
        "root",
      ]]
    ) {
      const line = text.stdout.split("\n").find((l) => l.startsWith(`${name} `));
      assertEquals(line?.replace(/ +/g, " "), `${name} <redacted> (from the file ${dir}/${file})`);
    }
    const json = await c.run(n1, ["config", "--json"]);
    assertEquals(json.code, 0, json.stderr);
    assertNoPassword(json.stdout, "autopilot config --json");
    const parsed = JSON.parse(json.stdout);
    assertEquals([parsed.MYSQL_PASSWORD, parsed.MYSQL_PASSWORD_FILE], ["<redacted>", `${dir}/app`]);
  });

  await t.step("the log (pre-start, health, backup at DEBUG) holds no password", () => {
    assertEquals(n1.env.LOG_LEVEL, "DEBUG");
    assert(logs.join("\n").includes("[DBG]"), "no debug line was logged");
    assertNoPassword(logs.join("\n"), "the log");
  });

  await t.step("the binlog holds the accounts, with hashes only, and the snapshot no password", async () => {
    const text = await binlogText(n1);
    assertNoPassword(text, "the binlog (mariadb-binlog)");
    // The statements that created the accounts are there (so the check above can fail), with the hashes.
    assert(
      text.includes(nativePasswordHash(PASSWORDS.repl)),
      "the binlog lacks the repl account's CREATE USER",
    );
    assert(
      text.includes(nativePasswordHash(PASSWORDS.app)),
      "the binlog lacks the app account's CREATE USER",
    );
    assert(await assertSnapshotsClean(c) >= 2, "the two snapshots are not stored");
  });

  await t.step(
    "a replica set up with the file's password: its binlog and its snapshot hold none",
    async () => {
      const pre = await c.preStart(n2);
      logs.push(pre.stdout, pre.stderr);
      assertEquals(pre.code, 0, pre.stderr);
      await c.startMysqld(n2);
      const health = await c.run(n2, ["health"]); // CHANGE MASTER TO ... MASTER_PASSWORD
      logs.push(health.stdout, health.stderr);
      assertEquals(health.code, 0, health.stderr);
      const [status] = await c.sql(n2, "SHOW SLAVE STATUS");
      assertEquals([status.Master_User, status.Slave_IO_Running], ["repl", "Yes"]); // the password worked
      await c.sql(n2, "FLUSH BINARY LOGS"); // a binlog written after the CHANGE MASTER, closed
      assertNoPassword(await binlogText(n2), `${n2.name}'s binlog (mariadb-binlog)`);
      const backup = await c.run(n2, ["backup", "now"], {
        BACKUP_NAME: "mysql-backup-replica-%Y-%m-%dT%H-%M-%SZ",
      });
      logs.push(backup.stdout, backup.stderr);
      assertEquals(backup.code, 0, backup.stderr);
      assert(await assertSnapshotsClean(c) >= 3, "the replica's snapshot is not stored");
      assertNoPassword(logs.join("\n"), "the log");
    },
  );
});
