#!/usr/bin/env bash
# RayDog default worker node script.
# Joins the head at $RAY_HEAD_IP and runs Ray in the foreground for as long as this node's task runs.
# The trap stops only this node's Ray (never `ray stop`, which is machine-wide).
set -euo pipefail
if [ -n "${RAYDOG_VENV:-}" ]; then source "$RAYDOG_VENV/bin/activate"; fi
: "${RAY_HEAD_IP:?RAY_HEAD_IP is not set: worker scripts need the IP of the head node}"

ray_pid=""
stop_ray() {
  if [ -n "$ray_pid" ]; then kill -TERM "$ray_pid" 2>/dev/null || true; wait "$ray_pid" || true; fi
  echo "raydog: worker node stopped"
}
trap stop_ray EXIT
trap 'exit 143' TERM INT HUP

# shellcheck disable=SC2086  # RAYDOG_RAY_START_ARGS is a list of arguments without spaces
ray start --address="$RAY_HEAD_IP:${RAYDOG_GCS_PORT:-6379}" ${RAYDOG_RAY_START_ARGS:-} --block &
ray_pid=$!
wait "$ray_pid"
