#!/bin/sh
# Smoke test of the mock backend with the curl CLI: every mode, the control
# endpoints, keep-alive reuse, N concurrent streams, a client leaving
# mid-stream, and a clean SIGTERM exit (no sanitizer report).
# Usage: tests/mock_smoke.sh [path/to/mock-backend] [concurrent streams]
set -u
MOCK=${1:-build/asan/tools/mock-backend}
CONC=${2:-1000}
DIR=$(mktemp -d)
FAILS=0
PID=

cleanup() {
	[ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
check() { # name, haystack, needle
	case "$2" in *"$3"*) ok "$1" ;; *) fail "$1: wanted [$3] in [$(printf %.300s "$2")]" ;; esac
}

"$MOCK" --port-file "$DIR/port" --quiet >"$DIR/out" 2>"$DIR/err" &
PID=$!
i=0
while [ ! -s "$DIR/port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
PORT=$(cat "$DIR/port")
B="http://127.0.0.1:$PORT"
C="curl -sS --max-time 10"
check "listening line" "$(cat "$DIR/out")" "listening on 127.0.0.1:$PORT"

post() { $C -X POST "$B$1" -d "${2:-}"; }
chat() { $C -N "$B/v1/chat/completions" -H 'Authorization: Bearer sk-smoke' -d "${1:-{\}}"; }

out=$(chat '{"model":"m1","messages":[{"role":"user","content":"hi"}]}')
check "stream first token" "$out" '"model":"m1","choices":[{"index":0,"delta":{"content":"tok0 "},"finish_reason":null}]}'
check "stream usage" "$out" '"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":16,"total_tokens":17}}'
check "stream done" "$out" 'data: [DONE]'
check "requests recorded" "$($C "$B/_mock/requests")" '"authorization":"Bearer sk-smoke","body":{"model":"m1"'

post /_mock/next '{"mode":"echo"}' >/dev/null
out=$(chat '{"messages":[{"role":"system","content":"S1"},{"role":"user","content":"a b"}]}')
check "echo" "$(echo "$out" | grep -o '"content":"[^"]*"' | tr -d '\n')" \
	'"content":"Echo. ""content":"System: ""content":"S1 ""content":"| ""content":"User: ""content":"a ""content":"b"'

post /_mock/next '{"mode":"stream","tokens":1,"reasoning_tokens":1,"token":"q\"{i}"}' >/dev/null
out=$(chat)
check "reasoning" "$out" '"delta":{"reasoning_content":"think0 "}'
check "escaped token" "$out" '"delta":{"content":"q\"0"}'

post /_mock/next '{"mode":"status","status":401,"body":"{\"error\":{\"message\":\"Invalid API key\"}}"}' >/dev/null
check "status" "$($C -i "$B/v1/chat/completions" -d '{}')" 'HTTP/1.1 401 Unauthorized'

post /_mock/next '{"mode":"close","tokens":2}' >/dev/null
out=$(chat 2>&1)
check "close mode" "$out" 'transfer closed with outstanding read data'

printf 'data: {"x":1}\n\n' >"$DIR/raw.sse"
post /_mock/next "{\"mode\":\"raw\",\"raw_file\":\"$DIR/raw.sse\",\"chunk\":4,\"inter_ms\":10}" >/dev/null
check "raw" "$(chat)" 'data: {"x":1}'

post /_mock/next '{"mode":"stall","after_headers":true}' >/dev/null
$C --max-time 1 "$B/v1/chat/completions" -d '{}' >/dev/null 2>&1

post /_mock/script '{"mode":"stream","tokens":50,"inter_ms":40}' >/dev/null
$C --max-time 0.5 "$B/v1/chat/completions" -d '{}' >/dev/null 2>&1
sleep 0.2
check "client aborts" "$($C "$B/_mock/stats")" '"active":0,"completed":6,"client_aborts":2,"continuations":0}'

check "keep-alive reuse" "$($C -v "$B/_mock/stats" "$B/v1/models" 2>&1)" 'Re-using existing connection'
check "404" "$($C -i "$B/nope")" 'HTTP/1.1 404'
check "bad script" "$(post /_mock/script '{"mode":"nope"}')" '"ok":false'

post /_mock/reset >/dev/null
check "reset" "$($C "$B/_mock/stats")" '{"connections":1,"requests":0,"active":0,"completed":0,"client_aborts":0,"continuations":0}'
check "reset requests" "$($C "$B/_mock/requests")" '[]'

post /_mock/script '{"mode":"stream","tokens":16,"inter_ms":100}' >/dev/null
start=$(date +%s.%N)
# curl --parallel caps at 300 transfers per process, so use a few processes.
per=250
g=0
while [ $((g * per)) -lt "$CONC" ]; do
	n=$((CONC - g * per))
	[ $n -gt $per ] && n=$per
	seq $n | sed "s|.*|url = \"$B/v1/chat/completions\"|" >"$DIR/urls.$g"
	curl -sS -N -Z --parallel-immediate --parallel-max $per --max-time 60 -d '{"model":"c"}' \
		-K "$DIR/urls.$g" 2>>"$DIR/conc.err" | grep -c 'data: \[DONE\]' >"$DIR/load.$g" &
	LOADERS="${LOADERS:-} $!"
	g=$((g + 1))
done
for p in $LOADERS; do wait "$p"; done
end=$(date +%s.%N)
n=$(cat "$DIR"/load.* | paste -sd+ | bc)
[ "$n" -eq "$CONC" ] && ok "$CONC concurrent streams complete" || fail "$n of $CONC streams complete"
echo "   ($(echo "$end - $start" | bc) s for $CONC x 16 tokens x 100 ms; rss $(ps -o rss= -p $PID) KiB)"
check "concurrent stats" "$($C "$B/_mock/stats")" "\"requests\":$CONC,\"active\":0,\"completed\":$CONC,\"client_aborts\":0,\"continuations\":0}"

# Leave a stalled and a streaming response open, then stop it.
post /_mock/next '{"mode":"stall"}' >/dev/null
$C --max-time 5 "$B/v1/chat/completions" -d '{}' >/dev/null 2>&1 &
C1=$!
$C --max-time 5 "$B/v1/chat/completions" -d '{}' >/dev/null 2>&1 &
C2=$!
sleep 0.3
kill -TERM $PID
wait $PID
rc=$?
PID=
[ $rc -eq 0 ] && ok "exit 0 on SIGTERM" || fail "exit status $rc"
if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error' "$DIR/err"; then
	fail "sanitizer report:"
	cat "$DIR/err"
else
	ok "no sanitizer report"
fi
wait $C1 $C2
echo "$FAILS failure(s)"
[ $FAILS -eq 0 ]
