#!/usr/bin/env bash
# RayDog default head node script.
# Runs Ray's head in the foreground for exactly as long as this node's task runs. On exit (the task is
# cancelled, the node is stopped, Ray dies) the trap stops only this node's Ray and tag store, never
# anyone else's: no `ray stop`, which would kill every Ray process on the machine.
set -euo pipefail
if [ -n "${RAYDOG_VENV:-}" ]; then source "$RAYDOG_VENV/bin/activate"; fi

children=()
stop_children() {
  for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
  echo "raydog: head node stopped"
}
trap stop_children EXIT
trap 'exit 143' TERM INT HUP

# The autoscaler's tag store: Redis on loopback only, password from a file, never on a command line.
if [ -n "${RAYDOG_TAG_STORE_PORT:-}" ]; then
  printf 'port %s\nbind 127.0.0.1\nprotected-mode yes\nrequirepass %s\nsave ""\nappendonly no\n' \
    "$RAYDOG_TAG_STORE_PORT" "$(cat "$RAYDOG_TAG_STORE_PASSWORD_FILE")" | redis-server - &
  children+=($!)
fi

# shellcheck disable=SC2086  # RAYDOG_RAY_START_ARGS is a list of arguments without spaces
ray start --head --port="${RAYDOG_GCS_PORT:-6379}" ${RAYDOG_RAY_START_ARGS:-} --block &
ray_pid=$!
children+=("$ray_pid")
wait "$ray_pid"
