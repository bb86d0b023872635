#!/bin/sh
# The image's entrypoint: checks the configuration, tells autopilot the container's memory limit, then runs
# ContainerPilot in its place.
#
# autopilot sizes the InnoDB buffer pool from that limit, but it cannot read /sys itself: Deno refuses every
# /sys read to a program without --allow-all, and Deno's own process.constrainedMemory() misses the limit on
# cgroup v1 hosts (the container sees its own cgroup at the mount's root). So this reads the cgroup file and
# passes its text on (src/node.ts); autopilot uses it only when Deno finds no limit itself.
set -eu
for file in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
  if [ -r "$file" ]; then
    AUTOPILOT_CGROUP_MEMORY_LIMIT=$(cat "$file")
    export AUTOPILOT_CGROUP_MEMORY_LIMIT
    break
  fi
done
# A wrong or missing setting is one line per problem and exit 2 now, before anything starts: the container then
# exits (Docker's restart policy decides what next), instead of ContainerPilot waiting for ever on a pre-start
# that cannot succeed in this environment.
/usr/local/bin/autopilot config >/dev/null || exit $?
# ContainerPilot reads the Consul token only from CONSUL_HTTP_TOKEN, never from its _FILE twin. With
# CONSUL_HTTP_TOKEN_FILE set (and checked by `autopilot config` above), the token goes into ContainerPilot's
# process environment, which `docker inspect` does not show (it shows the container's configuration only), and
# the twin is unset: autopilot, ContainerPilot's child, would otherwise see both and refuse. The value is the
# file less one trailing newline (`\n` or `\r\n`), as autopilot reads it.
if [ -n "${CONSUL_HTTP_TOKEN_FILE:-}" ] && [ -z "${CONSUL_HTTP_TOKEN:-}" ]; then
  CONSUL_HTTP_TOKEN=$(cat -- "$CONSUL_HTTP_TOKEN_FILE" && printf x) || {
    echo "autopilot-entrypoint: CONSUL_HTTP_TOKEN_FILE=$CONSUL_HTTP_TOKEN_FILE cannot be read" >&2
    exit 2
  }
  CONSUL_HTTP_TOKEN=${CONSUL_HTTP_TOKEN%x}
  nl='
'
  cr=$(printf '\r')
  case $CONSUL_HTTP_TOKEN in
    *"$cr$nl") CONSUL_HTTP_TOKEN=${CONSUL_HTTP_TOKEN%"$cr$nl"} ;;
    *"$nl") CONSUL_HTTP_TOKEN=${CONSUL_HTTP_TOKEN%"$nl"} ;;
  esac
  export CONSUL_HTTP_TOKEN
  unset CONSUL_HTTP_TOKEN_FILE
fi
# ContainerPilot's fork checks Consul's HTTPS certificate only when CONSUL_HTTP_SSL_VERIFY says so (its string
# form of `consul` leaves Go's InsecureSkipVerify on otherwise, discovery/config.go): check it unless the
# operator says otherwise. autopilot itself always checks it.
CONSUL_HTTP_SSL_VERIFY=${CONSUL_HTTP_SSL_VERIFY:-true}
export CONSUL_HTTP_SSL_VERIFY
exec /usr/local/bin/containerpilot "$@"
