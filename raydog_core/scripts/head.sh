#!/usr/bin/env bash
# RayDog default head node script.
# Runs Ray's head in the foreground for exactly as long as this node's task runs. On exit (the task is
# cancelled, the node is stopped, Ray dies) the trap stops only this node's Ray, tag store and metrics
# agent, never anyone else's: no `ray stop`, which would kill every Ray process on the machine.
set -euo pipefail
if [ -n "${RAYDOG_VENV:-}" ]; then source "$RAYDOG_VENV/bin/activate"; fi

# @raydog-include node_logs.sh

children=()
stop_children() {
  save_node_logs || true  # first: a platform may give a stopping task only a moment before it kills it
  for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
  echo "raydog: head node stopped"
}
trap stop_children EXIT
trap 'exit 143' TERM INT HUP

# Secrets handed over in the task environment (YellowDog) go to private files and leave the env.
move_to_file() {  # <variable> <file>: the file (0600) gets the variable's value; the variable is unset
  (umask 077 && printf '%s' "${!1}" > "$2")
  unset "$1"
}

# The autoscaler's tag store: Redis on loopback only, password from a file, never on a command line.
if [ -n "${RAYDOG_TAG_STORE_PASSWORD:-}" ] && [ -z "${RAYDOG_TAG_STORE_PASSWORD_FILE:-}" ]; then
  export RAYDOG_TAG_STORE_PASSWORD_FILE="$HOME/.raydog-tag-store-password"
  move_to_file RAYDOG_TAG_STORE_PASSWORD "$RAYDOG_TAG_STORE_PASSWORD_FILE"
fi
unset RAYDOG_TAG_STORE_PASSWORD
observability_password_file="$HOME/.raydog-observability-password"
if [ -n "${RAYDOG_OBSERVABILITY_PASSWORD:-}" ]; then
  move_to_file RAYDOG_OBSERVABILITY_PASSWORD "$observability_password_file"
fi
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

# With an observability node, Ray's dashboard reads metrics from its Prometheus and embeds its Grafana.
# That node started first and cannot know this head, so metrics are pushed: a Prometheus agent here
# scrapes every Ray node listed in Ray's own service-discovery file and remote-writes to it. Its
# Prometheus asks for the cluster's observability password (user `raydog`), for pushes and queries.
start_metrics_agent() {
  local work_dir="$HOME/.raydog-prometheus-agent"
  local discovery
  discovery="$(ray_temp_dir)/session_latest/prom_metrics_service_discovery.json"
  rm -rf "$work_dir" && mkdir -p "$work_dir"
  cat > "$work_dir/prometheus.yml" <<YAML
global:
  scrape_interval: ${RAYDOG_METRICS_SCRAPE_INTERVAL:-10s}
scrape_configs:
  - job_name: ray
    file_sd_configs:
      - files: ["$discovery"]
        refresh_interval: 5s
remote_write:
  - url: "$RAY_PROMETHEUS_HOST/api/v1/write"
    basic_auth:
      username: raydog
      password_file: "$observability_password_file"
YAML
  (
    # Ray's dashboard writes the file every 5 s once it runs; a head without a dashboard never does.
    for _ in $(seq "${RAYDOG_METRICS_DISCOVERY_WAIT_S:-600}"); do [ -e "$discovery" ] && break; sleep 1; done
    if [ ! -e "$discovery" ]; then
      echo "raydog: Ray wrote no $discovery (dashboard off?): metrics are not forwarded" >&2
      exit 0
    fi
    exec prometheus --enable-feature=agent --config.file="$work_dir/prometheus.yml" \
      --storage.agent.path="$work_dir/wal" --log.level=warn \
      --web.listen-address="127.0.0.1:${RAYDOG_PROMETHEUS_AGENT_PORT:-0}"
  ) &
  children+=($!)
}

if [ -n "${OBSERVABILITY_HOST:-}" ]; then
  export RAY_PROMETHEUS_HOST="http://$OBSERVABILITY_HOST:${RAYDOG_PROMETHEUS_PORT:-9090}"
  export RAY_GRAFANA_HOST="http://$OBSERVABILITY_HOST:${RAYDOG_GRAFANA_PORT:-3000}"
  export RAY_GRAFANA_IFRAME_HOST="${RAY_GRAFANA_IFRAME_HOST:-$RAY_GRAFANA_HOST}"
  if [ -s "$observability_password_file" ]; then  # Ray's dashboard queries Prometheus with it
    RAY_PROMETHEUS_HEADERS="{\"Authorization\": \"Basic $(printf 'raydog:%s' "$(cat "$observability_password_file")" | base64 -w0)\"}"
    export RAY_PROMETHEUS_HEADERS
  fi
  if command -v prometheus >/dev/null; then
    start_metrics_agent
  else
    echo "raydog: warning: prometheus is not installed on the head node, so Ray's metrics do not reach the observability node (apt-get install prometheus)" >&2
  fi
fi

# shellcheck disable=SC2086  # RAYDOG_RAY_START_ARGS is a list of arguments without spaces
ray start --head --port="${RAYDOG_GCS_PORT:-6379}" ${RAYDOG_RAY_START_ARGS:-} $autoscaling_args --block &
ray_pid=$!
children+=("$ray_pid")

# The watchdog (raydog_core/watchdog.py, handed over in the environment) ends this head once no client
# holds a lease on the cluster and it has been idle for its idle TTL: it exits 0 and so does this script.
# Any other exit of the watchdog is a fault of its own: the head then runs on, to its lifetime.
if [ -n "${RAYDOG_WATCHDOG_PROGRAM:-}" ]; then
  python3 -c "$RAYDOG_WATCHDOG_PROGRAM" &
  watchdog_pid=$!
  children+=("$watchdog_pid")
  status=0
  wait -n -p finished "$ray_pid" "$watchdog_pid" || status=$?
  if [ "${finished:-}" = "$watchdog_pid" ]; then
    if [ "$status" -eq 0 ]; then exit 0; fi
    echo "raydog: warning: the watchdog failed (status $status): this cluster now ends only at its lifetime" >&2
  else
    exit "$status"
  fi
fi
wait "$ray_pid"
