#!/bin/sh
# The image's entrypoint: tells autopilot the container's memory limit, then runs ContainerPilot in its place.
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
exec /usr/local/bin/containerpilot "$@"
