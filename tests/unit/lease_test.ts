/**
 * The lease operations (src/mysql/lease.ts) as statement sequences, on a fake server that refuses what a real
 * one refuses: super_read_only stops MySQL's admin account writing, a missing table gives 1146. The fake lives
 * here; tests/integration/lease_test.ts runs the same operations on real MariaDB servers. MySQL cannot be
 * installed on our machines, so this is where its sequences are checked.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { type MysqlClient, MysqlQueryError } from "../../src/mysql/client.ts";
import { type Flavour, sqlFor, type Statement } from "../../src/mysql/flavour.ts";
import {
  clearLease,
  extendLease,
  installLease,
  leaseLeftMs,
  leaseMsFor,
  leaseState,
} from "../../src/mysql/lease.ts";

Deno.test("leaseMsFor(): half the session TTL (the default 20 s gives 10 s, twice the 5 s health interval)", () => {
  assertEquals(leaseMsFor(20), 10_000);
  assertEquals(leaseMsFor(10), 5_000);
  assertEquals(leaseMsFor(86_400), 43_200_000);
});

Deno.test("leaseLeftMs(): counted from when the renewal was sent, never negative", () => {
  assertEquals(leaseLeftMs(10_000, 1000, 1000), 10_000);
  assertEquals(leaseLeftMs(10_000, 1000, 1250.7), 9749, "a pass delayed after the renewal gets less");
  assertEquals(leaseLeftMs(10_000, 1000, 11_000), 0, "nothing left: the renewal is a lease ago");
  assertEquals(leaseLeftMs(10_000, 1000, 60_000), 0);
  assertEquals(
    leaseLeftMs(10_000, 1000, 900),
    10_000,
    "a clock that went backwards gives no more than a lease",
  );
});

/** A server as far as the lease is concerned; `log` names each statement it was sent, in order. */
class FakeServer {
  readonly log: string[] = [];
  readOnly = true;
  superReadOnly: boolean;
  logBin = 1;
  installed = true;
  /** Milliseconds left of the lease, as of its last write; undefined: no row. */
  lease: number | undefined;
  /** Called before each statement: lets a test play the fence event in between. */
  before: (name: string) => void = () => {};
  /** A statement name that fails once with this error. */
  failOnce: { name: string; error: Error } | undefined;
  closed = false;

  constructor(readonly flavour: Flavour) {
    this.superReadOnly = flavour === "mysql";
  }

  /** A name for each statement the lease module may send. */
  #name(sql: string): string {
    const lease = sqlFor(this.flavour).lease;
    if (sql === lease.binlogOff) return "binlog off";
    if (sql === lease.binlogRestore) return "binlog back";
    if (sql === lease.liftSuperReadOnly) return "lift super_read_only";
    if (sql === lease.restoreSuperReadOnly) return "super_read_only on";
    if (sql === lease.clear) return "clear";
    if (sql === lease.state) return "state";
    if (sql === lease.extend(1).sql) return "extend";
    const i = lease.install.indexOf(sql);
    if (i >= 0) return `install ${i + 1}/${lease.install.length}`;
    throw new Error(`unexpected statement: ${sql}`);
  }

  #refuse(errno: number): never {
    throw new MysqlQueryError(
      "fake",
      errno === 1290 ? "ER_OPTION_PREVENTS_STATEMENT" : "ER_NO_SUCH_TABLE",
      errno,
      "x",
    );
  }

  query(statement: string | Statement): Promise<Record<string, unknown>[]> {
    if (this.closed) return Promise.reject(new Error("closed"));
    const sql = typeof statement === "string" ? statement : statement.sql;
    const name = this.#name(sql);
    this.before(name);
    this.log.push(name);
    if (this.failOnce?.name === name) {
      const { error } = this.failOnce;
      this.failOnce = undefined;
      return Promise.reject(error);
    }
    const writes = name === "extend" || name === "clear" || name.startsWith("install");
    try {
      if (writes && this.superReadOnly) this.#refuse(1290);
      if ((name === "extend" || name === "clear" || name === "state") && !this.installed) this.#refuse(1146);
    } catch (e) {
      return Promise.reject(e);
    }
    if (name === "binlog off") this.logBin = 0;
    if (name === "binlog back") this.logBin = 1;
    if (name === "lift super_read_only") this.superReadOnly = false;
    if (name === "super_read_only on") [this.superReadOnly, this.readOnly] = [true, true];
    if (name.startsWith("install")) this.installed = true;
    if (name === "extend") this.lease = Number((statement as Statement).values[0]) / 1000;
    if (name === "clear") this.lease = undefined;
    if (name === "state") {
      return Promise.resolve(this.lease === undefined ? [] : [{ remaining_us: String(this.lease * 1000) }]);
    }
    return Promise.resolve([]);
  }

  async run(statements: readonly (string | Statement)[]): Promise<void> {
    for (const s of statements) await this.query(s);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  get client(): MysqlClient {
    return this as unknown as MysqlClient;
  }
}

const INSTALL = (f: Flavour) => sqlFor(f).lease.install.map((_, i, all) => `install ${i + 1}/${all.length}`);

Deno.test("MariaDB: every write with the binlog off and back; the admin account writes through read_only", async () => {
  const s = new FakeServer("mariadb");
  await installLease(s.client, "mariadb");
  assert(await extendLease(s.client, "mariadb", 10_000));
  assertEquals(await leaseState(s.client, "mariadb"), 10_000);
  await clearLease(s.client, "mariadb");
  assertEquals(await leaseState(s.client, "mariadb"), undefined);
  assertEquals(s.log, [
    "binlog off",
    ...INSTALL("mariadb"),
    "binlog back",
    "binlog off",
    "extend",
    "binlog back",
    "state",
    "binlog off",
    "clear",
    "binlog back",
    "state",
  ]);
  assertEquals(s.logBin, 1);
});

Deno.test("MySQL: a super-read-only server's lease is left alone by a steady pass: nothing lifted, nothing to extend", async () => {
  const s = new FakeServer("mysql");
  assertEquals(await extendLease(s.client, "mysql", 10_000), false);
  assertEquals(s.log, ["binlog off", "extend", "binlog back"]);
  assertEquals([s.superReadOnly, s.lease, s.logBin], [true, undefined, 1]);
});

Deno.test("MySQL: before turning writable, super_read_only comes off (read_only stays on), then the lease is written", async () => {
  const s = new FakeServer("mysql");
  assert(await extendLease(s.client, "mysql", 10_000, { turningWritable: true }));
  assertEquals(s.log, ["binlog off", "extend", "lift super_read_only", "extend", "binlog back"]);
  assertEquals([s.superReadOnly, s.readOnly, s.lease], [false, true, 10_000]);
  // A writable server is written at once.
  s.log.length = 0;
  assert(await extendLease(s.client, "mysql", 9000));
  assertEquals(s.log, ["binlog off", "extend", "binlog back"]);
});

Deno.test("MySQL: the fence event turning super_read_only back on between lift and write is tried again", async () => {
  const s = new FakeServer("mysql");
  let played = false;
  s.before = (name) => {
    if (name === "extend" && !s.superReadOnly && !played) [played, s.superReadOnly] = [true, true];
  };
  assert(await extendLease(s.client, "mysql", 10_000, { turningWritable: true }));
  assertEquals(s.log, [
    "binlog off",
    "extend",
    "lift super_read_only",
    "extend",
    "lift super_read_only",
    "extend",
    "binlog back",
  ]);
  assertEquals(s.lease, 10_000);
  // Always refused: it gives up after a few tries, and the binlog is back on.
  const stuck = new FakeServer("mysql");
  stuck.before = (name) => {
    if (name === "extend") stuck.superReadOnly = true;
  };
  await assertRejects(
    () => extendLease(stuck.client, "mysql", 10_000, { turningWritable: true }),
    MysqlQueryError,
  );
  assertEquals(stuck.log.filter((n) => n === "extend").length, 4);
  assertEquals(stuck.logBin, 1);
});

Deno.test("MySQL: installing on a super-read-only server lifts super_read_only for the DDL only", async () => {
  const s = new FakeServer("mysql");
  await installLease(s.client, "mysql");
  assertEquals(s.log, [
    "binlog off",
    "install 1/4",
    "lift super_read_only",
    ...INSTALL("mysql"),
    "super_read_only on",
    "binlog back",
  ]);
  assertEquals([s.superReadOnly, s.readOnly], [true, true]);
});

Deno.test("MySQL: clearing on a super-read-only server lifts it only when a live lease is there to remove", async () => {
  const none = new FakeServer("mysql");
  await clearLease(none.client, "mysql");
  assertEquals(none.log, ["binlog off", "clear", "state", "binlog back"]);
  const live = new FakeServer("mysql");
  live.lease = 4000;
  await clearLease(live.client, "mysql");
  assertEquals(live.log, [
    "binlog off",
    "clear",
    "state",
    "lift super_read_only",
    "clear",
    "super_read_only on",
    "binlog back",
  ]);
  assertEquals([live.lease, live.superReadOnly], [undefined, true]);
});

Deno.test("a server that was primary before the lease existed gets it installed by the first extension", async () => {
  for (const flavour of ["mariadb", "mysql"] as const) {
    const s = new FakeServer(flavour);
    s.superReadOnly = false; // a writable primary
    s.installed = false;
    assert(await extendLease(s.client, flavour, 10_000));
    assertEquals(s.log, ["binlog off", "extend", ...INSTALL(flavour), "extend", "binlog back"], flavour);
    assertEquals(s.lease, 10_000);
  }
  // MySQL, turning writable: super_read_only is checked before the table is looked for.
  const s = new FakeServer("mysql");
  s.installed = false;
  assert(await extendLease(s.client, "mysql", 10_000, { turningWritable: true }));
  assertEquals(s.log, [
    "binlog off",
    "extend",
    "lift super_read_only",
    "extend",
    ...INSTALL("mysql"),
    "extend",
    "binlog back",
  ]);
  assertEquals([s.lease, s.superReadOnly, s.readOnly], [10_000, false, true]);
  const none = new FakeServer("mariadb");
  none.installed = false;
  await clearLease(none.client, "mariadb");
  assertEquals(await leaseState(none.client, "mariadb"), undefined, "nothing to clear, no lease");
});

Deno.test("nothing left of the lease: nothing is written", async () => {
  const s = new FakeServer("mariadb");
  assertEquals(await extendLease(s.client, "mariadb", 0), false);
  assertEquals(await extendLease(s.client, "mariadb", -3), false);
  assertEquals(s.log, []);
});

Deno.test("the binlog is turned back on after a failed write; a connection that cannot be is closed", async () => {
  const s = new FakeServer("mariadb");
  s.failOnce = { name: "extend", error: new MysqlQueryError("fake", "ER_LOCK_WAIT_TIMEOUT", 1205, "x") };
  await assertRejects(() => extendLease(s.client, "mariadb", 10_000), MysqlQueryError);
  assertEquals([s.log, s.logBin, s.closed], [["binlog off", "extend", "binlog back"], 1, false]);

  const broken = new FakeServer("mariadb");
  broken.failOnce = { name: "binlog back", error: new Error("connection lost") };
  await assertRejects(() => extendLease(broken.client, "mariadb", 10_000), Error, "connection lost");
  assertEquals([broken.logBin, broken.closed], [0, true], "left open with the binlog off");
});
