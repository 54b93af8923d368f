#!/bin/sh
# Runs test binaries (unit_* and integ_*), each with a timeout, from the
# repository root; prints PASS/FAIL per binary and one summary line.
# Usage: BUILD=build ./tests/run.sh BINARY...
# Env: TEST_TIMEOUT (seconds per binary, default 300), TEST_VERBOSE=1 to show
# the output of passing binaries too.
set -u

cd "$(dirname "$0")/.." || exit 2
: "${BUILD:=build}"
export BUILD
# Every daemon a test starts takes a free port for its metrics listener
# (the config default, 9464, may be taken, and tests must not share one);
# a test that scrapes reads the port from the daemon's log.
: "${SUNDYNIX_METRICS_LISTEN:=127.0.0.1:0}"
export SUNDYNIX_METRICS_LISTEN
timeout_s=${TEST_TIMEOUT:-300}
logdir=$(mktemp -d /tmp/sundynix-tests.XXXXXX) || exit 2
trap 'rm -rf "$logdir"' EXIT

passed=0
failed=0
unit=0
integ=0
other=0
failed_names=""

for bin in "$@"; do
	name=$(basename "$bin")
	case "$name" in
	unit_*) unit=$((unit + 1)) ;;
	integ_*) integ=$((integ + 1)) ;;
	*) other=$((other + 1)) ;;
	esac
	log="$logdir/$name.log"
	start=$(date +%s)
	if [ ! -x "$bin" ]; then
		echo "missing: $bin" >"$log"
		rc=127
	else
		timeout -k 10 "$timeout_s" "$bin" >"$log" 2>&1
		rc=$?
	fi
	secs=$(($(date +%s) - start))
	if [ "$rc" -eq 0 ]; then
		passed=$((passed + 1))
		echo "PASS $name (${secs}s)"
		[ "${TEST_VERBOSE:-0}" = 1 ] && cat "$log"
	else
		failed=$((failed + 1))
		failed_names="$failed_names $name"
		if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
			why="timed out after ${timeout_s}s"
		else
			why="exit status $rc"
		fi
		echo "FAIL $name ($why, ${secs}s)"
		sed 's/^/    /' "$log"
	fi
done

[ "$failed" -gt 0 ] && echo "failed:$failed_names"
echo "SUMMARY: $passed passed, $failed failed (unit $unit, integration $integ, other $other)"
[ "$failed" -eq 0 ]
