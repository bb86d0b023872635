/**
 * Finding the external programs the integration harness runs.
 *
 * Consul and versitygw are built by `scripts/install-tools.sh` into a per-version cache. Their paths come
 * from `AUTOPILOT_CONSUL` / `AUTOPILOT_VERSITYGW` (set by the test runner script) or, failing that, from
 * `bash scripts/install-tools.sh --print`. MariaDB and iproute2 come from Debian packages on the PATH.
 *
 * @module
 */

/** Tools that `scripts/install-tools.sh --print` knows about. */
export type ToolName = "DENO" | "CONSUL" | "VERSITYGW" | "HADOLINT";

/** The repository root (three levels above this file). */
export const REPO_ROOT: string = decodeURIComponent(new URL("../../../", import.meta.url).pathname).replace(
  /\/$/,
  "",
);

/**
 * The flags of deno.json's `autopilot` task (`deno run FLAGS mod.ts`): the permission set and the V8 flags that
 * `deno task compile` also builds the image's binary with (a unit test keeps the two tasks equal). Everything
 * that runs `autopilot` from this checkout passes these, so that it runs as the image does; one set of V8
 * flags also keeps Deno's V8 code cache valid from one run to the next (other flags invalidate it).
 *
 * @param denoJson The text of deno.json (default: this checkout's).
 * @throws {Error} when the task is not `deno run FLAGS mod.ts`.
 */
export function autopilotRunFlags(denoJson?: string): string[] {
  const text = denoJson ?? Deno.readTextFileSync(`${REPO_ROOT}/deno.json`);
  const task = String(JSON.parse(text).tasks?.autopilot ?? "");
  const words = task.trim().split(/\s+/);
  if (words[0] !== "deno" || words[1] !== "run" || words.at(-1) !== "mod.ts") {
    throw new Error(`deno.json: the autopilot task is '${task}', not 'deno run FLAGS mod.ts'`);
  }
  return words.slice(2, -1);
}

let printed: Promise<Record<string, string>> | undefined;

async function installToolsPrint(): Promise<Record<string, string>> {
  const out = await new Deno.Command("bash", {
    args: [`${REPO_ROOT}/scripts/install-tools.sh`, "--print"],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `scripts/install-tools.sh --print failed (${out.code}): ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  const result: Record<string, string> = {};
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) result[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return result;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    const st = await Deno.stat(path);
    return st.isFile && st.mode !== null && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * Path of a tool built by `scripts/install-tools.sh`: `$AUTOPILOT_<NAME>` if set, else the script's `--print`
 * output. Throws a one-line Error naming the tool when the binary is missing.
 */
export async function toolPath(name: ToolName): Promise<string> {
  let path = Deno.env.get(`AUTOPILOT_${name}`);
  if (!path) {
    printed ??= installToolsPrint();
    path = (await printed)[name];
  }
  if (!path || !(await isExecutable(path))) {
    throw new Error(
      `${name.toLowerCase()} not found${path ? ` at ${path}` : ""}: run scripts/install-tools.sh`,
    );
  }
  return path;
}

const SYSTEM_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/**
 * Absolute path of a system program (looked up on PATH and the usual sbin/bin dirs). Throws a one-line Error
 * when it is missing, naming the Debian package that provides it.
 */
export function systemTool(program: string, debianPackage: string): Promise<string> {
  let found = systemTools.get(program);
  if (!found) {
    found = findSystemTool(program, debianPackage);
    found.catch(() => systemTools.delete(program));
    systemTools.set(program, found);
  }
  return found;
}

const systemTools = new Map<string, Promise<string>>();

async function findSystemTool(program: string, debianPackage: string): Promise<string> {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== ""), ...SYSTEM_DIRS];
  for (const dir of dirs) {
    if (await isExecutable(`${dir}/${program}`)) return `${dir}/${program}`;
  }
  throw new Error(`${program} not found (Debian package ${debianPackage}): run scripts/install-tools.sh`);
}
