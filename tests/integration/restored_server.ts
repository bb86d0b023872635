/** A throwaway mariadbd on a restored datadir, for tests that check what a restore produced. */
import { freePort, type Harness, runOk, StopWaiting, waitFor } from "./harness/mod.ts";

/** Starts a throwaway mariadbd on a restored datadir, with a minimal cnf of its own. */
export async function serve(
  h: Harness,
  datadir: string,
  dir: string,
): Promise<(query: string) => Promise<string[][]>> {
  const socket = `${dir}/mysqld.sock`;
  const cnf = `${dir}/my.cnf`;
  await Deno.writeTextFile(
    cnf,
    [
      "[mariadbd]",
      "user=root",
      `datadir=${datadir}`,
      `socket=${socket}`,
      `pid-file=${dir}/mysqld.pid`,
      `port=${freePort()}`,
      "bind-address=127.0.0.1",
      `log_error=${dir}/error.log`,
      "server_id=99",
      "log_bin=mysql-bin",
      "binlog_format=ROW",
      "innodb_buffer_pool_size=64M",
      "performance_schema=OFF",
      "skip-name-resolve",
      "",
    ].join("\n"),
  );
  const proc = await h.group.spawn({
    name: "mariadbd restored",
    program: "/usr/sbin/mariadbd",
    args: [`--defaults-file=${cnf}`],
    logFile: `${dir}/stdout.log`,
  });
  const sql = async (query: string): Promise<string[][]> => {
    const out = await runOk("mariadb", ["--no-defaults", "-S", socket, "-uroot", "-N", "-B"], {
      stdin: query,
    });
    return out.trimEnd().split("\n").map((l) => l.split("\t"));
  };
  await waitFor("the restored mariadbd to answer", async () => {
    if (proc.exited) {
      const log = await Deno.readTextFile(`${dir}/error.log`).catch(() => "");
      throw new StopWaiting(`the restored mariadbd exited: ${log.trim().split("\n").slice(-5).join(" | ")}`);
    }
    return (await sql("SELECT 1"))[0][0] === "1";
  }, { timeoutMs: 30_000 });
  return sql;
}
