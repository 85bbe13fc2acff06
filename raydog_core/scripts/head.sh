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
# A password handed over in the task environment (YellowDog) goes to a private file and leaves the env.
if [ -n "${RAYDOG_TAG_STORE_PASSWORD:-}" ] && [ -z "${RAYDOG_TAG_STORE_PASSWORD_FILE:-}" ]; then
  export RAYDOG_TAG_STORE_PASSWORD_FILE="$HOME/.raydog-tag-store-password"
  (umask 077 && printf '%s' "$RAYDOG_TAG_STORE_PASSWORD" > "$RAYDOG_TAG_STORE_PASSWORD_FILE")
fi
unset RAYDOG_TAG_STORE_PASSWORD
if [ -n "${RAYDOG_TAG_STORE_PORT:-}" ]; then
  printf 'port %s\nbind 127.0.0.1\nprotected-mode yes\nrequirepass %s\nsave ""\nappendonly no\n' \
    "$RAYDOG_TAG_STORE_PORT" "$(cat "$RAYDOG_TAG_STORE_PASSWORD_FILE")" | redis-server - &
  children+=($!)
fi

# Under `ray up`, the autoscaler's config arrives after this node starts (Ray's updater copies it):
# wait for it, bounded, then run the head with the autoscaler monitor.
autoscaling_args=""
if [ -n "${RAYDOG_AUTOSCALING_CONFIG:-}" ]; then
  config="${RAYDOG_AUTOSCALING_CONFIG/#\~/$HOME}"
  for _ in $(seq $(( ${RAYDOG_AUTOSCALING_CONFIG_WAIT_S:-600} * 5 ))); do
    [ -s "$config" ] && break
    sleep 0.2
  done
  if [ ! -s "$config" ]; then echo "raydog: autoscaling config $config never arrived" >&2; exit 1; fi
  autoscaling_args="--autoscaling-config=$config"
fi

# shellcheck disable=SC2086  # RAYDOG_RAY_START_ARGS is a list of arguments without spaces
ray start --head --port="${RAYDOG_GCS_PORT:-6379}" ${RAYDOG_RAY_START_ARGS:-} $autoscaling_args --block &
ray_pid=$!
children+=("$ray_pid")
wait "$ray_pid"
