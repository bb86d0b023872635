/**
 * The Dockerfile passes hadolint (installed by `scripts/install-tools.sh`, version pinned in `scripts/tools.sh`)
 * with no finding at any level. Rules are switched off only by the `# hadolint ignore=` lines in the Dockerfile,
 * each next to the reason, and only those reviewed below; no configuration file can relax it, because hadolint
 * runs with an empty HOME and an empty configuration.
 *
 * @module
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { autopilotRunFlags, REPO_ROOT, toolPath } from "./harness/mod.ts";

/** The rules the Dockerfile switches off, each with its reason beside it in the Dockerfile. */
const REVIEWED_IGNORES = new Set([
  "DL3002", // the image stays root: autopilot logs in through socket authentication as root and chowns restores
  "DL3006", // FROM runtime-${FLAVOUR} names a stage of the same file, which hadolint does not resolve
  "DL3041", // zstd comes from the base distribution at its release's version; XtraBackup itself is pinned
  "DL3008", // procps (for /usr/bin/kill) on the MariaDB image, when it lacks it, at its release's version
]);

interface Finding {
  readonly code: string;
  readonly level: string;
  readonly line: number;
  readonly message: string;
}

/** Runs hadolint on `dockerfile` (a path relative to `cwd`) and returns its exit code and findings. */
async function hadolint(dockerfile: string, cwd: string): Promise<{ code: number; findings: Finding[] }> {
  const home = await Deno.makeTempDir({ prefix: "hadolint-home-" });
  try {
    const config = `${home}/hadolint.yaml`;
    await Deno.writeTextFile(config, "{}\n");
    const out = await new Deno.Command(await toolPath("HADOLINT"), {
      args: ["--config", config, "--no-color", "--format", "json", dockerfile],
      cwd,
      clearEnv: true,
      env: { HOME: home, PATH: "/usr/bin:/bin" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout).trim();
    const stderr = new TextDecoder().decode(out.stderr).trim();
    let findings: Finding[];
    try {
      findings = JSON.parse(stdout || "[]");
    } catch {
      throw new Error(`hadolint printed no JSON (exit ${out.code}): ${stdout} ${stderr}`);
    }
    return { code: out.code, findings };
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

Deno.test("hadolint finds nothing in the Dockerfile", async () => {
  const { code, findings } = await hadolint("Dockerfile", REPO_ROOT);
  const lines = findings.map((f) => `Dockerfile:${f.line} ${f.code} ${f.level}: ${f.message}`);
  assertEquals(lines, [], `hadolint:\n${lines.join("\n")}`);
  assertEquals(code, 0);
});

Deno.test("hadolint reports a Dockerfile's faults, so the check above can fail", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hadolint-case-" });
  try {
    await Deno.writeTextFile(
      `${dir}/Dockerfile`,
      "FROM debian\nRUN apt-get update && apt-get install -y curl\nRUN cd /tmp && curl -o x https://example.invalid/x\n",
    );
    const { code, findings } = await hadolint("Dockerfile", dir);
    const codes = new Set(findings.map((f) => f.code));
    for (const expected of ["DL3006", "DL3008", "DL3003"]) {
      assert(codes.has(expected), `hadolint did not report ${expected}: ${[...codes].join(", ")}`);
    }
    assert(code !== 0, "hadolint exits non-zero on findings");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the build stage's files alone install with deno.lock and type-check, as `deno task compile` needs", async () => {
  // What the `autopilot` stage copies, read from the Dockerfile itself.
  const text = await Deno.readTextFile(`${REPO_ROOT}/Dockerfile`);
  const stage = text.split(/^FROM /m).find((s) => /\sAS autopilot\s*$/m.test(s.split("\n")[0]));
  assert(stage, "Dockerfile: no `autopilot` build stage");
  const sources = [...stage.matchAll(/^COPY (?!--)(.+)$/gm)].flatMap((m) =>
    m[1].trim().split(/\s+/).slice(0, -1)
  );
  assert(sources.includes("mod.ts") && sources.includes("deno.lock"), `copied: ${sources.join(" ")}`);
  const dir = await Deno.makeTempDir({ prefix: "autopilot-build-" });
  try {
    for (const source of sources) {
      const target = `${dir}/${source.replace(/\/$/, "")}`;
      await new Deno.Command("cp", { args: ["-R", `${REPO_ROOT}/${source.replace(/\/$/, "")}`, target] })
        .output();
    }
    const deno = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args,
        cwd: dir,
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      return { code: out.code, text: `${dec.decode(out.stdout)}${dec.decode(out.stderr)}`.trim() };
    };
    for (const step of [["install", "--frozen"], ["check", "mod.ts"]]) {
      const { code, text } = await deno(...step);
      assertEquals(code, 0, `deno ${step.join(" ")} in the build context failed:\n${text}`);
    }
    // The same permission set the compile task embeds is enough to start.
    const version = await deno("run", ...autopilotRunFlags(), "mod.ts", "--version");
    assertEquals(version.code, 0, version.text);
    assert(version.text.includes("autopilot "), version.text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the Dockerfile switches off only reviewed hadolint rules", async () => {
  const text = await Deno.readTextFile(`${REPO_ROOT}/Dockerfile`);
  const ignored = new Set<string>();
  for (const m of text.matchAll(/^#\s*hadolint\s+(?:global\s+)?ignore=([A-Z0-9, \t]+)$/gm)) {
    for (const code of m[1].split(",")) ignored.add(code.trim());
  }
  assertEquals([...ignored].sort(), [...REVIEWED_IGNORES].sort());
});
