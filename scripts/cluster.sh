#!/usr/bin/env bash
# Brings up a local autopilot-mysql cluster (Consul + N MariaDB nodes in network namespaces, each driven as
# containerpilot.json5 says) without Docker or ContainerPilot. Installs whatever is missing first
# (scripts/install-tools.sh, idempotent), then runs scripts/local_cluster.ts until Ctrl-C or --duration,
# with the settings of _env (or --env-file FILE, relative to the current directory).
#   bash scripts/cluster.sh [--env-file FILE] [--nodes 3] [--duration SECONDS] [--help]        (as root)
set -uo pipefail
here=$PWD
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/install-tools.sh || exit 1
while IFS='=' read -r name path; do export "AUTOPILOT_$name=$path"; done < <(bash scripts/install-tools.sh --print)
export DENO_DIR=$AUTOPILOT_DENO_DIR NO_COLOR=1
"$AUTOPILOT_DENO" install --frozen >/dev/null 2>&1 || "$AUTOPILOT_DENO" install --frozen || exit 1
# The script stops what it started when it gets SIGINT/SIGTERM; exec so that those reach it directly. It runs
# from the caller's directory, where a relative --env-file is (`deno task cluster` would run it from $root).
cd "$here" || exit 1
exec "$AUTOPILOT_DENO" run -A "$root/scripts/local_cluster.ts" "$@"
