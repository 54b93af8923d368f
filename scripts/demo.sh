#!/bin/sh
# The `make demo` walk-through: a private nats-server, the dispatcher with no
# model (the stub answers), then the mock OpenAI-compatible backend activated
# with `sundynixctl config set`, showing the memory profile reaching it.
# Everything binds 127.0.0.1 and everything started here is stopped by PID on
# exit. BUILD names the build directory (default: build).
set -eu

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DISPATCHER=$BUILD/sundynix-dispatcher
CTL=$BUILD/sundynixctl
MOCK=$BUILD/tools/mock-backend

for bin in "$DISPATCHER" "$CTL" "$MOCK"; do
	if [ ! -x "$bin" ]; then
		echo "demo: $bin is missing; run 'make demo' (it builds everything first)" >&2
		exit 1
	fi
done
for tool in nats-server python3 curl; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "demo: $tool is not installed; run ./scripts/install-deps.sh" >&2
		exit 1
	fi
done

# Settings from the caller's environment would point the pieces at different
# servers or subjects; the demo owns all of them.
unset SUNDYNIX_SUBJECT_PREFIX SUNDYNIX_STUB_TTFT_MS SUNDYNIX_STUB_INTER_TOKEN_MS SUNDYNIX_LOG_LEVEL JOURNAL_STREAM

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sundynix-demo.XXXXXX")
NATS_PID=""
DISPATCHER_PID=""
MOCK_PID=""

# Stops what this script started, newest first, by PID only.
stop_pid() {
	pid=$1
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	status=$?
	trap - EXIT INT TERM
	stop_pid "$DISPATCHER_PID"
	stop_pid "$MOCK_PID"
	stop_pid "$NATS_PID"
	rm -rf "$TMP"
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -t 1 ]; then
	BOLD=$(printf '\033[1m')
	RESET=$(printf '\033[0m')
else
	BOLD=""
	RESET=""
fi

section() {
	printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"
}

fail() {
	echo "demo: $*" >&2
	if [ -s "$TMP/dispatcher.log" ]; then
		echo "demo: last lines of the dispatcher log:" >&2
		tail -n 20 "$TMP/dispatcher.log" >&2
	fi
	exit 1
}

# A free TCP port on 127.0.0.1 (the kernel picks it; we release it at once).
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_for FILE TEXT SECONDS PID: waits until FILE contains TEXT, failing
# early if PID exits.
wait_for() {
	i=0
	while ! grep -qF -- "$2" "$1" 2>/dev/null; do
		kill -0 "$4" 2>/dev/null || fail "process $4 exited while waiting for '$2' in $(basename "$1")"
		[ $i -lt $(($3 * 10)) ] || fail "timed out after $3 s waiting for '$2' in $(basename "$1")"
		sleep 0.1
		i=$((i + 1))
	done
}

section "Starting nats-server on 127.0.0.1"
NATS_PORT=$(free_port)
NATS_URL=nats://127.0.0.1:$NATS_PORT
nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$TMP/nats.log" 2>&1 &
NATS_PID=$!
wait_for "$TMP/nats.log" "Server is ready" 10 "$NATS_PID"
echo "nats-server (pid $NATS_PID) listening on $NATS_URL"
export SUNDYNIX_NATS_URL="$NATS_URL"

section "Starting sundynix-dispatcher with no model (the stub answers)"
# The config is the shipped example with the demo's server, quick stub timings
# and a short system prompt, so it never drifts from the real layout.
python3 - "$NATS_URL" config/dispatcher.json "$TMP/dispatcher.json" <<'EOF'
import json, sys
url, src, dst = sys.argv[1:4]
with open(src) as f:
    cfg = json.load(f)
cfg["nats"]["servers"] = [url]
cfg["subject_prefix"] = "sundynix"
cfg["stub"]["ttft_ms"] = 300
cfg["stub"]["inter_token_ms"] = 30
cfg["prompt"]["system"] = "You are Sundynix, a friendly assistant."
with open(dst, "w") as f:
    json.dump(cfg, f, indent=2)
EOF
"$DISPATCHER" -c "$TMP/dispatcher.json" 2>"$TMP/dispatcher.log" &
DISPATCHER_PID=$!
wait_for "$TMP/dispatcher.log" "dispatcher ready" 15 "$DISPATCHER_PID"
echo "sundynix-dispatcher (pid $DISPATCHER_PID) is ready; no control plane answers, so it runs on the stub"

PROFILE="name: Alice; hobby: fishing"
FACT="lives in Hangzhou"

section "Chat 1 (stub): sundynixctl chat --profile \"$PROFILE\" --fact \"$FACT\" \"Hello, who are you?\""
"$CTL" chat --timeout 60 --profile "$PROFILE" --fact "$FACT" "Hello, who are you?" || fail "chat 1 failed"

section "Starting the mock OpenAI-compatible backend (echo mode) on 127.0.0.1"
"$MOCK" --port 0 --port-file "$TMP/mock.port" --mode echo --ttft-ms 300 --inter-ms 80 >"$TMP/mock.log" 2>&1 &
MOCK_PID=$!
i=0
while [ ! -s "$TMP/mock.port" ]; do
	kill -0 "$MOCK_PID" 2>/dev/null || fail "mock-backend exited: $(cat "$TMP/mock.log")"
	[ $i -lt 100 ] || fail "mock-backend did not report its port"
	sleep 0.1
	i=$((i + 1))
done
MOCK_PORT=$(cat "$TMP/mock.port")
MOCK_URL=http://127.0.0.1:$MOCK_PORT
echo "mock-backend (pid $MOCK_PID) listening on $MOCK_URL; it streams back the system prompt and the user message"

section "Activating it: sundynixctl config set --base-url $MOCK_URL/v1 --model mock-model --api-key sk-demo-... --revision 1"
# A throwaway key, generated here, so nothing real ever lands in a demo.
DEMO_KEY="sk-demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
"$CTL" config set --base-url "$MOCK_URL/v1" --model mock-model --api-key "$DEMO_KEY" --revision 1 ||
	fail "config set failed"
wait_for "$TMP/dispatcher.log" "model config applied: model=mock-model" 10 "$DISPATCHER_PID"
echo "dispatcher log: $(grep -F "model config applied: model=mock-model" "$TMP/dispatcher.log" | tail -n 1)"

section "Chat 2 (mock backend): the same request, now streamed from the backend"
"$CTL" chat --timeout 60 --profile "$PROFILE" --fact "$FACT" "Hello, who are you?" || fail "chat 2 failed"

section "What the backend received (system message, from $MOCK_URL/_mock/requests)"
curl -fsS "$MOCK_URL/_mock/requests" >"$TMP/requests.json" || fail "could not read the mock's recorded requests"
# Prints the model and messages of the last request; the Authorization header
# is left out on purpose (it carries the key).
python3 - "$TMP/requests.json" "$PROFILE" <<'EOF'
import json, sys
reqs = json.load(open(sys.argv[1]))
if not reqs:
    sys.exit("demo: the mock recorded no request")
body = reqs[-1]["body"]
print("POST %s  model=%s stream=%s" % (reqs[-1]["path"], body.get("model"), body.get("stream")))
for m in body.get("messages", []):
    print("--- %s message ---" % m.get("role"))
    print(m.get("content"))
system = next((m["content"] for m in body.get("messages", []) if m.get("role") == "system"), "")
if sys.argv[2] not in system:
    sys.exit("demo: the profile did not reach the backend")
print("--- the profile reached the backend verbatim ---")
EOF

section "Done: stopping everything this demo started"
