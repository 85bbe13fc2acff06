#!/usr/bin/env bash
# Runs the test sessions in four lanes at once: the core suite in two halves (clusters: the builder and
# `ray up` on the local backend; platform: faults, YellowDog, tunnels, tag store), Prefect, and Airflow.
# Most of a test's time is waiting (for a Ray node to start, a lease to lapse, a server to answer), so on a
# 2-core machine four lanes keep both cores busy where two left about 40 % of them idle. Each lane's
# output goes to its own log and is printed whole when the lanes end, so the logs never interleave; the
# exit status is non-zero if any session failed, and the last lines give each lane's time and the
# tests of every session.
set -uo pipefail
cd "$(dirname "$0")/.."
logs="$(mktemp -d "${TMPDIR:-/tmp}/raydog-test-lanes.XXXXXX")"
started=$SECONDS

nox -s lint || exit 1
nox -s core prefect airflow --install-only >/dev/null || exit 1  # environments first, once, in order

run_lane() {  # name, session [-- test paths]
  local name=$1; shift
  local lane_started=$SECONDS
  # --no-install: the environments are ready, and two lanes share the core one (no concurrent installs).
  nox --reuse-venv=yes --no-install -s "$@" >"$logs/$name.log" 2>&1
  local status=$?
  echo "lane $name ($*) finished with status $status after $((SECONDS - lane_started)) s" >>"$logs/$name.log"
  return $status
}

CORE_CLUSTERS=(tests/core tests/autoscaler)
CORE_PLATFORM=(tests/faults tests/yellowdog tests/tunnels tests/tagstore)
run_lane core-clusters core -- "${CORE_CLUSTERS[@]}" &
pids=($!)
run_lane core-platform core -- "${CORE_PLATFORM[@]}" &
pids+=($!)
run_lane prefect prefect &
pids+=($!)
run_lane airflow airflow &
pids+=($!)
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done

lanes=(core-clusters core-platform prefect airflow)
for name in "${lanes[@]}"; do
  echo "=================================== lane: $name ==================================="
  cat "$logs/$name.log"
done

# One closing line over every session: pytest's summaries look like "== 12 passed, 1 skipped in 3.4s ==".
summary() { grep -hE '^=+ .*(passed|failed|error).* in [0-9.]+s' "$logs"/*.log; }
count() { summary | grep -oE "[0-9]+ ($1)\b" | awk '{s += $1} END {print s + 0}'; }
grep -h "^lane " "$logs"/*.log
echo "all lanes done in $((SECONDS - started)) s"
echo "tests: $(count passed) passed, $(count 'failed|errors?') failed, $(count skipped) skipped"
rm -rf "$logs"
exit "$status"
