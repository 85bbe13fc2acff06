#!/usr/bin/env bash
# RayDog default worker node script.
# Joins the head at $RAY_HEAD_IP and runs Ray in the foreground for as long as this node's task runs.
# The trap stops only this node's Ray (never `ray stop`, which is machine-wide).
set -euo pipefail
if [ -n "${RAYDOG_VENV:-}" ]; then source "$RAYDOG_VENV/bin/activate"; fi
: "${RAY_HEAD_IP:?RAY_HEAD_IP is not set: worker scripts need the IP of the head node}"

ray_pid=""
watch_pid=""
stop_ray() {
  if [ -n "$watch_pid" ]; then kill -TERM "$watch_pid" 2>/dev/null || true; fi
  if [ -n "$ray_pid" ]; then kill -TERM "$ray_pid" 2>/dev/null || true; wait "$ray_pid" || true; fi
  echo "raydog: worker node stopped"
}
trap stop_ray EXIT
trap 'exit 143' TERM INT HUP
trap 'exit 0' USR1  # the head is gone for good: the cluster has ended, and this node with it

# shellcheck disable=SC2086  # RAYDOG_RAY_START_ARGS is a list of arguments without spaces
ray start --address="$RAY_HEAD_IP:${RAYDOG_GCS_PORT:-6379}" ${RAYDOG_RAY_START_ARGS:-} --block &
ray_pid=$!

# In a cluster that ends itself (its head's watchdog ends the head), a worker leaves soon after its head
# has gone, and cleanly: Ray's own reconnect timeout would keep it, and its agents, a minute or more.
if [ -n "${RAYDOG_HEAD_LOST_AFTER_S:-}" ]; then
  (
    misses=0
    while sleep 5; do
      if timeout 5 bash -c ": </dev/tcp/$RAY_HEAD_IP/${RAYDOG_GCS_PORT:-6379}" 2>/dev/null; then
        misses=0
      else
        misses=$((misses + 1))
      fi
      if [ $((misses * 5)) -ge "$RAYDOG_HEAD_LOST_AFTER_S" ]; then
        echo "raydog: the head has not answered for ${RAYDOG_HEAD_LOST_AFTER_S} s: the cluster has ended"
        kill -USR1 $$
        exit 0
      fi
    done
  ) &
  watch_pid=$!
fi
wait "$ray_pid"
