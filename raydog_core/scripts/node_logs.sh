# --- RayDog: this node's Ray logs, kept for the post-mortem (part of the default head and worker scripts) ---
# Where Ray keeps this node's session: --temp-dir= from our arguments (nodes sharing a host), else Ray's
# default.
ray_temp_dir() {
  local arg
  # shellcheck disable=SC2086
  for arg in ${RAYDOG_RAY_START_ARGS:-}; do
    # `return 0`, not `return`: in a trap (the EXIT trap calls this) a bare return gives the status of
    # the command before the trap, and under `set -e` a non-zero one would end the script right there.
    case "$arg" in --temp-dir=*) echo "${arg#--temp-dir=}"; return 0 ;; esac
  done
  echo "${RAY_TMPDIR:-${TMPDIR:-/tmp}}/ray"
}

# As the node starts to stop, and when the backend asks for it (RAYDOG_SAVE_NODE_LOGS=1: YellowDog with a task
# output store), the tails of Ray's logs that explain a node's end go into one archive in the task's
# working directory; the platform's agent uploads it with the task's output. Bounded: at most 40 files,
# the last 64 KiB of each. Custom scripts can keep this block (and call save_node_logs on exit).
save_node_logs() {
  [ "${RAYDOG_SAVE_NODE_LOGS:-}" = 1 ] || return 0
  local logs out=raydog-node-logs file count=0
  logs="$(ray_temp_dir)/session_latest/logs"
  [ -d "$logs" ] || return 0
  rm -rf "$out" && mkdir -p "$out" || return 0
  for file in "$logs"/raylet.* "$logs"/gcs_server.* "$logs"/monitor* "$logs"/dashboard.log "$logs"/dashboard_agent.log \
    "$logs"/runtime_env*.log "$logs"/log_monitor.* "$logs"/job-driver-*.log; do
    [ -f "$file" ] || continue
    count=$((count + 1))
    [ "$count" -le 40 ] || break
    tail -c 65536 "$file" > "$out/${file##*/}" 2>/dev/null || true
  done
  tar -czf raydog-node-logs.tar.gz "$out" 2>/dev/null || true
  rm -rf "$out"
}
# --- end of RayDog's node-log block ---
