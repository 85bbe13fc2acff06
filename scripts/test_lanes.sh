#!/usr/bin/env bash
# Runs the test sessions in two lanes at once: the core suite in one, Prefect then Airflow in the other.
# A sequential run leaves about half of a 2-core machine idle (Ray nodes start, then tests wait on them),
# so two lanes finish in well under the sum of their times. Each lane's output goes to its own log and
# is printed whole when the lane ends, so the logs never interleave; the exit status is non-zero if any
# session failed, and the last line totals the tests of every session.
set -uo pipefail
cd "$(dirname "$0")/.."
logs="$(mktemp -d "${TMPDIR:-/tmp}/raydog-test-lanes.XXXXXX")"
started=$SECONDS

nox -s lint || exit 1
nox -s core prefect airflow --install-only >/dev/null || exit 1  # environments first, once, in order

run_lane() {  # name, sessions...
  local name=$1; shift
  local lane_started=$SECONDS
  nox -s "$@" --reuse-venv=yes >"$logs/$name.log" 2>&1
  local status=$?
  echo "lane $name ($*) finished with status $status after $((SECONDS - lane_started)) s" >>"$logs/$name.log"
  return $status
}

run_lane core core &
core_pid=$!
run_lane integrations prefect airflow &
integrations_pid=$!
wait "$core_pid"; core_status=$?
wait "$integrations_pid"; integrations_status=$?

for name in core integrations; do
  echo "=================================== lane: $name ==================================="
  cat "$logs/$name.log"
done

# One closing line over every session: pytest's summaries look like "== 12 passed, 1 skipped in 3.4s ==".
summary() { grep -hE '^=+ .*(passed|failed|error).* in [0-9.]+s' "$logs"/*.log; }
count() { summary | grep -oE "[0-9]+ ($1)\b" | awk '{s += $1} END {print s + 0}'; }
echo "all lanes done in $((SECONDS - started)) s"
echo "tests: $(count passed) passed, $(count 'failed|errors?') failed, $(count skipped) skipped"
rm -rf "$logs"
[ "$core_status" -eq 0 ] && [ "$integrations_status" -eq 0 ]
