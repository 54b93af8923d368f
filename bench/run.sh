#!/usr/bin/env bash
# bench/run.sh: the dispatcher benchmark (`make bench`). Starts nats-server,
# the mock backend and the daemon on 127.0.0.1, drives them with
# $BUILD/bench/loadgen, and prints one table for people and one
# "BENCH_JSON {...}" line per scenario for scripts. See bench/README.md.
#
#   ./bench/run.sh          all scenarios (A B C D)
#   ./bench/run.sh A B      only those
#
# Environment: BUILD (default build), BENCH_KEEP=1 keeps the work directory
# with every log, BENCH_<S>_REQUESTS overrides a scenario's request count,
# BENCH_LOADGEN_ARGS adds loadgen options to the measured runs (e.g. --validate).
# Exit status: 0 when every scenario ran and every stream was correct.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DAEMON=$BUILD/sundynix-dispatcher
CTL=$BUILD/sundynixctl
MOCK=$BUILD/tools/mock-backend
LOADGEN=$BUILD/bench/loadgen
TICK=$(getconf CLK_TCK)

for f in "$DAEMON" "$CTL" "$MOCK" "$LOADGEN"; do
	[ -x "$f" ] || { echo "bench: $f missing (make all $MOCK $LOADGEN)" >&2; exit 2; }
done
for tool in nats-server python3 curl; do
	command -v "$tool" >/dev/null || { echo "bench: $tool not found (make deps)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sundynix-bench.XXXXXX")
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
NATS_PID='' MOCK_PID='' DAEMON_PID=''

STOP_RC=0
stop_pid() { # pid: stops one process we started (TERM, KILL after 20 s); STOP_RC = its status
	local pid=$1 _
	STOP_RC=0
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || STOP_RC=$?
}

cleanup() {
	stop_pid "$DAEMON_PID"
	stop_pid "$MOCK_PID"
	stop_pid "$NATS_PID"
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "bench: logs kept in $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "bench: $*" >&2; exit 1; }

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_log() { # file substring timeout_s
	local _
	for _ in $(seq $(($3 * 20))); do
		grep -qF -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

cpu_ticks() { # utime+stime of a whole process (all threads), in clock ticks
	local stat rest
	stat=$(cat "/proc/$1/stat")
	rest=${stat##*) }
	# shellcheck disable=SC2086
	set -- $rest
	echo $((${12} + ${13}))
}

status_kb() { # pid field (VmRSS, VmHWM)
	awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"
}

# ---- nats-server, shared by all scenarios --------------------------------
NATS_PORT=$(free_port)
NATS_URL=nats://127.0.0.1:$NATS_PORT
nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
wait_log "$WORK/nats.log" "Server is ready" 10 || fail "nats-server did not start (see $WORK/nats.log)"

# ---- one scenario -------------------------------------------------------
# run_scenario NAME STREAMS REQUESTS TOKENS INTER_MS MOCK_ARGS... ; TOKENS 0 = stub
run_scenario() {
	local name=$1 streams=$2 requests=$3 tokens=$4 inter=$5
	shift 5
	local dir=$WORK/$name prefix=bench$$$name
	local mock_url="" floor="null" expect=() rc_floor=0 rc_nats=0 stub=false
	mkdir -p "$dir"
	[ "$tokens" = 0 ] && stub=true
	$stub || expect=(--expect-tokens "$tokens")
	echo "bench: scenario $name: $streams streams, $requests requests, ${tokens} tokens, ${inter} ms apart" >&2

	if ! $stub; then
		"$MOCK" --port 0 --port-file "$dir/mock.port" --quiet "$@" >"$dir/mock.log" 2>&1 &
		MOCK_PID=$!
		for _ in $(seq 100); do [ -s "$dir/mock.port" ] && break; sleep 0.05; done
		[ -s "$dir/mock.port" ] || fail "mock backend did not start ($dir/mock.log)"
		mock_url=http://127.0.0.1:$(cat "$dir/mock.port")
		# The floor first, so its sockets are gone before the daemon opens its own.
		"$LOADGEN" --direct "$mock_url/v1" --streams "$streams" --requests "$requests" \
			"${expect[@]}" --timeout 90 --json --label "$name-direct" \
			>"$dir/floor.json" 2>"$dir/floor.err" || rc_floor=$?
		floor=$(tail -n 1 "$dir/floor.json")
		[ -n "$floor" ] || floor=null
		curl -fsS -X POST -d '{}' "$mock_url/_mock/reset" >/dev/null
	fi

	# The daemon starts at info (to see its readiness lines), then drops to warn
	# by a reload, so per-request info lines are not part of the cost measured.
	local cfg=$dir/dispatcher.json
	write_config() {
		python3 - "$NATS_URL" "$prefix" "$1" "$cfg" <<'EOF'
import json, sys
url, prefix, level, out = sys.argv[1:]
# Only the keys the bench needs: everything else keeps the daemon's defaults.
c = {
    "nats": {"servers": [url]},
    "subject_prefix": prefix,
    "limits": {"max_inflight": 20000},
    "timeouts": {"config_request_ms": 500},
    "stub": {"ttft_ms": 10, "inter_token_ms": 1},
    "log": {"level": level},
}
json.dump(c, open(out + ".tmp", "w"), indent=1)
EOF
		mv "$cfg.tmp" "$cfg"
	}
	write_config info
	"$DAEMON" -c "$cfg" >"$dir/daemon.log" 2>&1 &
	DAEMON_PID=$!
	wait_log "$dir/daemon.log" "dispatcher ready" 15 || fail "daemon not ready ($dir/daemon.log)"
	if ! $stub; then
		"$CTL" --nats "$NATS_URL" --prefix "$prefix" config set --base-url "$mock_url/v1" \
			--model mock-model --revision 1 >/dev/null
		wait_log "$dir/daemon.log" "model config applied: model=mock-model" 10 ||
			fail "model config not applied ($dir/daemon.log)"
	fi
	write_config notice
	kill -HUP "$DAEMON_PID"
	wait_log "$dir/daemon.log" "reload: log.level changed" 10 || fail "reload not seen ($dir/daemon.log)"
	# One request end to end before measuring: the path works and is warm.
	timeout 20 "$CTL" --nats "$NATS_URL" --prefix "$prefix" chat --timeout 15 "warm up" >/dev/null 2>"$dir/warmup.err" ||
		fail "warm-up request failed ($dir/daemon.log)"
	[ -n "$mock_url" ] && curl -fsS -X POST -d '{}' "$mock_url/_mock/reset" >/dev/null

	# The measured phase: daemon CPU and peak RSS around the loadgen run.
	local rss0 cpu0 cpu1 hwm nats0 nats1 mock0=0 mock1=0
	rss0=$(status_kb "$DAEMON_PID" VmRSS)
	echo 5 >"/proc/$DAEMON_PID/clear_refs" # resets VmHWM to the current RSS
	kill -USR1 "$DAEMON_PID" # logs the warm-up's chunk latencies and starts a new histogram
	wait_log "$dir/daemon.log" "chunk-latency histogram" 10 || fail "no histogram line ($dir/daemon.log)"
	cpu0=$(cpu_ticks "$DAEMON_PID")
	nats0=$(cpu_ticks "$NATS_PID")
	[ -n "$MOCK_PID" ] && mock0=$(cpu_ticks "$MOCK_PID")
	# Syscalls of the daemon (all threads) over the measured phase, when perf
	# can count them; BENCH_SYSCALLS=detail also counts each syscall by name.
	local perf_pid="" perf_ev=raw_syscalls:sys_enter
	[ "${BENCH_SYSCALLS:-}" = detail ] && perf_ev="$perf_ev,syscalls:sys_enter_*"
	if [ "${BENCH_SYSCALLS:-}" != off ] && command -v perf >/dev/null; then
		perf stat -x, -e "$perf_ev" -p "$DAEMON_PID" -o "$dir/perf.txt" 2>"$dir/perf.err" &
		perf_pid=$!
		sleep 0.3 # perf attaches before the load starts
	fi
	# shellcheck disable=SC2086 # BENCH_LOADGEN_ARGS is a list of options
	"$LOADGEN" --nats "$NATS_URL" --prefix "$prefix" --streams "$streams" --requests "$requests" \
		"${expect[@]}" --timeout 90 --json --label "$name" ${BENCH_LOADGEN_ARGS:-} \
		>"$dir/nats.json" 2>"$dir/nats.err" || rc_nats=$?
	cpu1=$(cpu_ticks "$DAEMON_PID")
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" 2>/dev/null
		wait "$perf_pid" 2>/dev/null || true
	fi
	nats1=$(cpu_ticks "$NATS_PID")
	[ -n "$MOCK_PID" ] && mock1=$(cpu_ticks "$MOCK_PID")
	hwm=$(status_kb "$DAEMON_PID" VmHWM)
	local run mstats=null
	run=$(tail -n 1 "$dir/nats.json")
	[ -n "$run" ] || run=null
	[ -n "$mock_url" ] && mstats=$(curl -fsS "$mock_url/_mock/stats")
	# The measured phase's chunk latencies (SIGUSR1: log and start anew).
	kill -USR1 "$DAEMON_PID"
	local n=0
	while [ "$(grep -c "chunk-latency histogram" "$dir/daemon.log")" -lt 2 ] && [ $n -lt 100 ]; do
		sleep 0.1
		n=$((n + 1))
	done

	local drc
	stop_pid "$DAEMON_PID"
	drc=$STOP_RC
	DAEMON_PID=
	stop_pid "$MOCK_PID"
	MOCK_PID=

	# The daemon's per-chunk overhead (curl write callback -> NATS publish)
	# during the measured phase: the second histogram line (the first was the
	# warm-up's, the third is the empty one logged at exit).
	local hist
	hist=$(grep -F "chunk-latency histogram" "$dir/daemon.log" | sed -n 2p || true)
	[ -n "$hist" ] && echo "${hist#*chunk-latency histogram}" >"$dir/histogram.txt"

	python3 - "$name" "$streams" "$requests" "$tokens" "$inter" "$TICK" "$cpu0" "$cpu1" "$rss0" "$hwm" \
		"$rc_nats" "$rc_floor" "$nats0" "$nats1" "$mock0" "$mock1" "$dir" "$drc" "$run" "$floor" "$mstats" \
		>>"$RESULTS" <<'EOF'
import json, sys, os
(name, streams, requests, tokens, inter, tick, cpu0, cpu1, rss0, hwm, rc_nats, rc_floor,
 nats0, nats1, mock0, mock1, d, drc) = sys.argv[1:19]
run, floor, mstats = (json.loads(a) for a in sys.argv[19:22])
streams, tick = int(streams), int(tick)
cpu_s = (int(cpu1) - int(cpu0)) / tick
tok = run["tokens"] if run else 0
r = {
  "scenario": name, "streams": streams, "requests": int(requests),
  "tokens_per_reply": int(tokens) if int(tokens) else "stub", "inter_ms": int(inter),
  "ok": bool(run and run["ok"]) and int(rc_nats) == 0,
  "daemon_cpu_s": round(cpu_s, 3), "cpu_us_per_token": round(cpu_s * 1e6 / tok, 3) if tok else None,
  "baseline_rss_kb": int(rss0), "peak_rss_kb": int(hwm),
  "rss_kb_per_stream": round((int(hwm) - int(rss0)) / streams, 2),
  "peak_active_streams": run["peak_active_streams"] if run else None,
  "tokens_per_s": run["tokens_per_s"] if run else None,
  "ttft_p50_ms": run["ttft_p50_ms"] if run else None, "ttft_p99_ms": run["ttft_p99_ms"] if run else None,
  "floor_ok": (bool(floor["ok"]) and int(rc_floor) == 0) if floor else None,
  "floor_ttft_p50_ms": floor["ttft_p50_ms"] if floor else None,
  "floor_ttft_p99_ms": floor["ttft_p99_ms"] if floor else None,
  "floor_tokens_per_s": floor["tokens_per_s"] if floor else None,
  "mock_connections": mstats["connections"] if mstats else None,
  "mock_requests": mstats["requests"] if mstats else None,
  "nats_server_cpu_s": round((int(nats1) - int(nats0)) / tick, 3),
  "mock_cpu_s": round((int(mock1) - int(mock0)) / tick, 3),
  "daemon_exit": int(drc),
  "loadgen": run, "floor": floor,
}
r["added_ttft_p50_ms"] = round(r["ttft_p50_ms"] - r["floor_ttft_p50_ms"], 3) if run and floor else None
r["added_ttft_p99_ms"] = round(r["ttft_p99_ms"] - r["floor_ttft_p99_ms"], 3) if run and floor else None
r["requests_per_connection"] = (round(r["mock_requests"] / r["mock_connections"], 1)
                                if mstats and mstats["connections"] else None)
# perf stat -x, lines: count,unit,event,... ("<not counted>" when perf failed)
sc = {}
pf = os.path.join(d, "perf.txt")
for line in open(pf) if os.path.exists(pf) else []:
    f = line.strip().split(",")
    if len(f) > 2 and f[0].isdigit():
        sc[f[2].replace("syscalls:sys_enter_", "")] = int(f[0])
total = sc.pop("raw_syscalls:sys_enter", None)
r["syscalls_per_token"] = round(total / tok, 3) if total is not None and tok else None
r["syscalls_by_name_per_token"] = {k: round(v / tok, 4) for k, v in
                                   sorted(sc.items(), key=lambda kv: -kv[1]) if v} if sc and tok else None
h = os.path.join(d, "histogram.txt")
r["chunk_latency_histogram"] = open(h).read().strip() if os.path.exists(h) else None
print(json.dumps(r, separators=(",", ":")))
EOF
	echo "BENCH_JSON $(tail -n 1 "$RESULTS")"
	[ "$rc_nats" = 0 ] || echo "bench: scenario $name FAILED: $(cat "$dir/nats.err") $run" >&2
	[ "$rc_floor" = 0 ] || echo "bench: scenario $name floor run failed: $floor" >&2
	[ "$drc" = 0 ] || echo "bench: scenario $name: daemon exited with status $drc" >&2
}

SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(A B C D E)
for s in "${SCENARIOS[@]}"; do
	case $s in
	A) run_scenario A 100 "${BENCH_A_REQUESTS:-20000}" 64 0 --tokens 64 --ttft-ms 0 --inter-ms 0 --tokens-per-write 8 ;;
	B) run_scenario B 1000 "${BENCH_B_REQUESTS:-5000}" 32 20 --tokens 32 --ttft-ms 0 --inter-ms 20 ;;
	C) run_scenario C 10000 "${BENCH_C_REQUESTS:-10000}" 16 250 --tokens 16 --ttft-ms 0 --inter-ms 250 ;;
	D) run_scenario D 1000 "${BENCH_D_REQUESTS:-3000}" 0 1 ;;
	E) run_scenario E 1 "${BENCH_E_REQUESTS:-2000}" 8 0 --tokens 8 --ttft-ms 0 --inter-ms 0 ;;
	*) fail "unknown scenario $s (A B C D E)" ;;
	esac
done

# ---- the table ------------------------------------------------------------
python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def f(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v) if isinstance(v, (int, float)) else str(v)
hdr = ["scen", "streams", "reqs", "tok", "ok", "cpu us/tok", "sys/tok", "tok/s", "peak open", "peak RSS MB", "KB/stream",
       "TTFT p50 ms", "p99 ms", "floor p50", "floor p99", "added p50", "req/conn"]
out = [hdr]
for r in rows:
    out.append([r["scenario"], str(r["streams"]), str(r["requests"]), str(r["tokens_per_reply"]),
                "yes" if r["ok"] else "NO", f(r["cpu_us_per_token"]), f(r.get("syscalls_per_token")), f(r["tokens_per_s"], "{:.0f}"), f(r["peak_active_streams"], "{}"),
                f(r["peak_rss_kb"] / 1024), f(r["rss_kb_per_stream"]), f(r["ttft_p50_ms"], "{:.3f}"),
                f(r["ttft_p99_ms"], "{:.3f}"), f(r["floor_ttft_p50_ms"], "{:.3f}"),
                f(r["floor_ttft_p99_ms"], "{:.3f}"), f(r["added_ttft_p50_ms"], "{:.3f}"),
                f(r["requests_per_connection"], "{:.1f}")])
w = [max(len(row[i]) for row in out) for i in range(len(hdr))]
print()
for row in out:
    print("  ".join(c.rjust(w[i]) for i, c in enumerate(row)))
for r in rows:
    if r["chunk_latency_histogram"]:
        print(f"{r['scenario']}: chunk-latency histogram{r['chunk_latency_histogram']}")
if not any(r["chunk_latency_histogram"] for r in rows):
    print("(chunk-latency histogram: the daemon does not report one yet)")
EOF

python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if all(r["ok"] and r["floor_ok"] is not False and r["daemon_exit"] == 0 for r in rows) else 1)
' "$RESULTS"
