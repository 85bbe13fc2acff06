#!/usr/bin/env bash
# RayDog default worker node script.
# Joins the head at $RAY_HEAD_IP and runs Ray in the foreground for as long as this node's task runs.
# The trap stops only this node's Ray (never `ray stop`, which is machine-wide).
set -euo pipefail
if [ -n "${RAYDOG_VENV:-}" ]; then source "$RAYDOG_VENV/bin/activate"; fi
: "${RAY_HEAD_IP:?RAY_HEAD_IP is not set: worker scripts need the IP of the head node}"

# @raydog-include node_logs.sh

ray_pid=""
watch_pid=""
stop_ray() {
  save_node_logs || true  # first: a platform may give a stopping task only a moment before it kills it
  if [ -n "$watch_pid" ]; then kill -TERM "$watch_pid" 2>/dev/null || true; fi
  if [ -n "$ray_pid" ]; then kill -TERM "$ray_pid" 2>/dev/null || true; wait "$ray_pid" || true; fi
  echo "raydog: worker node stopped"
}
# Left behind when the head is gone: Ray's agents outlive their raylet for a minute trying to tell the
# dead GCS about it. Where this node has a session of its own (local nodes, emulated instances), what is
# left in it once Ray stopped is this node's own; elsewhere (an agent's shared session) nothing is touched.
# They handle SIGTERM by telling that same dead GCS, so what is still there after a grace gets SIGKILL.
stop_leftovers() {
  local sid pid signal
  sid="$(ps -o sid= -p $$ | tr -d ' ')"
  [ "$sid" = "$(ps -o pgid= -p $$ | tr -d ' ')" ] || [ "$sid" = "$PPID" ] || return 0
  for signal in TERM KILL; do
    for pid in $(ps -o pid= -s "$sid"); do
      [ "$pid" = "$$" ] || [ "$pid" = "$PPID" ] || [ "$pid" = "$sid" ] || kill "-$signal" "$pid" 2>/dev/null || true
    done
    [ "$signal" = KILL ] || sleep 2
  done
}
trap stop_ray EXIT
trap 'exit 143' TERM INT HUP
trap 'stop_ray; stop_leftovers; trap - EXIT; exit 0' USR1  # the head is gone: the cluster has ended

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
