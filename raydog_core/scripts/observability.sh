#!/usr/bin/env bash
# RayDog default observability node script: Prometheus (and Grafana when installed) for the Ray
# dashboard's metrics panels. Ray nodes find this node through $OBSERVABILITY_HOST.
set -euo pipefail
if [ -n "${RAYDOG_VENV:-}" ]; then source "$RAYDOG_VENV/bin/activate"; fi
command -v prometheus >/dev/null || {
  echo "raydog: prometheus is not installed on this node (apt-get install prometheus), or set enable_observability=false" >&2
  exit 1
}
children=()
stop_children() { for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait || true; }
trap stop_children EXIT
trap 'exit 143' TERM INT HUP

prom_port="${RAYDOG_PROMETHEUS_PORT:-9090}"
work_dir="${HOME}/observability"
mkdir -p "$work_dir/data"
cat > "$work_dir/prometheus.yml" <<YAML
global:
  scrape_interval: 10s
scrape_configs:
  - job_name: ray
    file_sd_configs:
      - files: ["${RAYDOG_PROMETHEUS_TARGETS_FILE:-$work_dir/targets.json}"]
YAML
[ -f "$work_dir/targets.json" ] || echo '[]' > "$work_dir/targets.json"
prometheus --config.file="$work_dir/prometheus.yml" --storage.tsdb.path="$work_dir/data" \
  --web.listen-address="${RAYDOG_OBSERVABILITY_BIND:-127.0.0.1}:$prom_port" &
children+=($!)
if command -v grafana-server >/dev/null; then
  grafana-server --homepath="${GRAFANA_HOME:-/usr/share/grafana}" \
    cfg:server.http_addr="${RAYDOG_OBSERVABILITY_BIND:-127.0.0.1}" cfg:server.http_port="${RAYDOG_GRAFANA_PORT:-3000}" &
  children+=($!)
fi
wait "${children[0]}"
