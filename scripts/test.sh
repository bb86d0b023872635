#!/usr/bin/env bash
# The test command: installs whatever is missing (scripts/install-tools.sh), checks formatting, lint and
# types, then runs every test against real servers. The last line is `N passed, N failed`.
#   bash scripts/test.sh [deno test arguments, e.g. a file or --filter NAME]
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/install-tools.sh || { echo "0 passed, 1 failed"; exit 1; }
while IFS='=' read -r name path; do export "AUTOPILOT_$name=$path"; done < <(bash scripts/install-tools.sh --print)
export DENO_DIR=$AUTOPILOT_DENO_DIR NO_COLOR=1
deno=$AUTOPILOT_DENO
log_dir=${AUTOPILOT_TEST_STATE:-/tmp/autopilot-test-state}
mkdir -p "$log_dir"
out=$log_dir/deno-test.out

passed=0 failed=0
static() { # name, command...
  local name=$1; shift
  if "$@" >"$log_dir/$name.out" 2>&1; then
    passed=$((passed + 1)); echo "static check $name ... ok"
  else
    failed=$((failed + 1)); echo "static check $name ... FAILED"; tail -n 30 "$log_dir/$name.out"
  fi
}
"$deno" install --frozen >"$log_dir/install.out" 2>&1 || { cat "$log_dir/install.out"; echo "0 passed, 1 failed"; exit 1; }
static fmt "$deno" fmt --check
static lint "$deno" lint
static check "$deno" task check

# Servers or namespaces left by a run that was killed are stopped and removed first (by recorded pid only).
"$deno" run -A tests/integration/harness/cleanup.ts || true

"$deno" test -A "${@:-tests/}" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
summary=$(sed -nE 's/^(ok|FAILED) \| ([0-9]+) passed( \([0-9]+ steps?\))? \| ([0-9]+) failed.*/\2 \4/p' "$out" | tail -n 1)
if [[ -z $summary ]]; then summary="0 1"; rc=1; fi
read -r tp tf <<<"$summary"
passed=$((passed + tp)) failed=$((failed + tf))
((failed > 0)) && rc=1
echo "$passed passed, $failed failed"
exit "$rc"
