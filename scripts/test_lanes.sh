#!/usr/bin/env bash
# Runs the test sessions in two lanes at once, each a half of the core suite then one integration:
# lane 1 the builder and `ray up` on the local backend (tests/core, tests/autoscaler), then Prefect;
# lane 2 faults, YellowDog, tunnels and the tag store, then Airflow. The lanes are CPU-bound on Ray node
# starts (about 5 CPU-seconds a node with bytecode installed: noxfile.py), so more lanes gain nothing:
# three took 1101 s against two's 1123 s (measured side by side), with every session slower, and four
# (before bytecode) overloaded the machine past Ray's fixed 30 s node start-up deadline. Each lane's output
# goes to its own log and is printed whole when the lanes end, so the logs never interleave; the exit
# status is non-zero if any session failed, and the last lines give each lane's time and the tests of
# every session.
set -uo pipefail
cd "$(dirname "$0")/.."
logs="$(mktemp -d "${TMPDIR:-/tmp}/raydog-test-lanes.XXXXXX")"
started=$SECONDS

# Lint beside the test environments' installs (its own environment; about 35 s saved), then the lanes.
nox -s lint >"$logs/lint.log" 2>&1 &
lint=$!
nox -s core prefect airflow --install-only >/dev/null || exit 1  # environments first, once, in order
lint_status=0
wait "$lint" || lint_status=1
cat "$logs/lint.log"
[ "$lint_status" -eq 0 ] || exit 1

run_lane() {  # name, then nox invocations separated by "+": session [-- test paths] + session ...
  local name=$1; shift
  local lane_started=$SECONDS status=0 args=()
  for arg in "$@" +; do
    if [ "$arg" = + ]; then
      # --no-install: the environments are ready, and both lanes use the core one (no concurrent installs).
      nox --reuse-venv=yes --no-install -s "${args[@]}" >>"$logs/$name.log" 2>&1 || status=1
      args=()
    else
      args+=("$arg")
    fi
  done
  echo "lane $name finished with status $status after $((SECONDS - lane_started)) s" >>"$logs/$name.log"
  return $status
}

CLUSTERS=(tests/core tests/autoscaler)
PLATFORM=(tests/faults tests/yellowdog tests/tunnels tests/tagstore)
for dir in tests/*/; do  # a new test folder must be given a lane, or it would never run
  dir=${dir%/}
  case "$dir" in tests/__*) continue ;; esac  # __pycache__
  case " ${CLUSTERS[*]} ${PLATFORM[*]} tests/prefect tests/airflow " in
    *" $dir "*) ;;
    *) echo "test folder $dir is in no lane: add it to scripts/test_lanes.sh" >&2; exit 1 ;;
  esac
done

run_lane clusters-prefect core -- "${CLUSTERS[@]}" + prefect &
first=$!
run_lane platform-airflow core -- "${PLATFORM[@]}" + airflow &
second=$!
status=0
wait "$first" || status=1
wait "$second" || status=1

for name in clusters-prefect platform-airflow; do
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
