#!/usr/bin/env bash
# Runs the test sessions in three lanes at once: the builder's core tests then Prefect; `ray up` then
# Airflow; faults, YellowDog, tunnels, the tag store and the slowest builder tests. Most of a test's time
# is waiting (a Ray node starting, a lease lapsing), and with bytecode installed a Ray node starts in
# 40 % of the CPU it took without (noxfile.py), so three lanes share a 2-core machine; without bytecode
# four lanes overloaded it past Ray's fixed 30 s node start-up deadline (measured). Each lane's output
# goes to its own log and is printed whole when the lanes end, so the logs never interleave; the exit
# status is non-zero if any session failed, and the last lines give each lane's time and the tests of
# every session.
set -uo pipefail
cd "$(dirname "$0")/.."
logs="$(mktemp -d "${TMPDIR:-/tmp}/raydog-test-lanes.XXXXXX")"
started=$SECONDS

nox -s lint || exit 1
nox -s core prefect airflow --install-only >/dev/null || exit 1  # environments first, once, in order

run_lane() {  # name, then nox invocations separated by "+": session [-- test paths] + session ...
  local name=$1; shift
  local lane_started=$SECONDS status=0 args=()
  for arg in "$@" +; do
    if [ "$arg" = + ]; then
      # --no-install: the environments are ready, and lanes share the core one (no concurrent installs).
      nox --reuse-venv=yes --no-install -s "${args[@]}" >>"$logs/$name.log" 2>&1 || status=1
      args=()
    else
      args+=("$arg")
    fi
  done
  echo "lane $name finished with status $status after $((SECONDS - lane_started)) s" >>"$logs/$name.log"
  return $status
}

# Lanes of about equal length (measured): each is nox invocations separated by "+", a session then the
# test paths (and pytest options) it runs.
SLOW_BUILDER=(tests/core/test_observability.py tests/core/test_examples.py)
LANE_BUILDER=(core -- tests/core "${SLOW_BUILDER[@]/#/--ignore=}" + prefect)
LANE_RAY_UP=(core -- tests/autoscaler + airflow)
LANE_PLATFORM=(core -- tests/faults tests/yellowdog tests/tunnels tests/tagstore "${SLOW_BUILDER[@]}")
LANES=(builder-prefect ray_up-airflow platform)
for dir in tests/*/; do  # a new test folder must be given a lane, or it would never run
  dir=${dir%/}
  case "$dir" in tests/__*) continue ;; esac  # __pycache__
  case " ${LANE_BUILDER[*]} ${LANE_RAY_UP[*]} ${LANE_PLATFORM[*]} tests/prefect tests/airflow " in
    *" $dir "*) ;;
    *) echo "test folder $dir is in no lane: add it to scripts/test_lanes.sh" >&2; exit 1 ;;
  esac
done

run_lane builder-prefect "${LANE_BUILDER[@]}" &
pids=($!)
run_lane ray_up-airflow "${LANE_RAY_UP[@]}" &
pids+=($!)
run_lane platform "${LANE_PLATFORM[@]}" &
pids+=($!)
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done

for name in "${LANES[@]}"; do
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
