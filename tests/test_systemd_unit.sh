#!/bin/sh
# Checks systemd/sundynix-dispatcher.service without installing anything:
#  1. `systemd-analyze security --offline=yes` rates the unit 1.5 or lower.
#  2. `systemd-analyze verify` prints nothing.
# verify insists that ExecStart= names an existing executable and that the
# man: page in Documentation= resolves, so it runs on a temporary copy whose
# ExecStart= points at the built daemon ($BUILD/sundynix-dispatcher, default
# build/) and with MANPATH pointing at docs/man laid out as man8/. If man(1)
# is absent the copy drops Documentation= (said in the output).
# Exit status 0 when both checks pass, 1 otherwise. UNIT=FILE checks another
# unit file (used to see the checks fail).
set -u

cd "$(dirname "$0")/.." || exit 1
: "${BUILD:=build}"
unit=${UNIT:-systemd/sundynix-dispatcher.service}
max_score=1.5
daemon="$PWD/$BUILD/sundynix-dispatcher"
installed=/usr/local/sbin/sundynix-dispatcher
fail=0

if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "FAIL: systemd-analyze not found (Debian package systemd)"
	exit 1
fi
if [ ! -x "$daemon" ]; then
	echo "FAIL: $daemon not built (run make first)"
	exit 1
fi

tmp=$(mktemp -d /tmp/sundynix-unit.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

# 1. Exposure score.
out=$(systemd-analyze security --offline=yes "$unit" 2>&1)
score=$(printf '%s\n' "$out" | sed -n 's/^.*Overall exposure level for [^:]*: \([0-9.]*\).*$/\1/p')
if [ -z "$score" ]; then
	echo "FAIL: security: no score in the output of systemd-analyze security --offline=yes $unit:"
	printf '%s\n' "$out" | sed 's/^/    /'
	fail=1
elif awk -v s="$score" -v m="$max_score" 'BEGIN { exit !(s + 0 <= m + 0) }'; then
	echo "ok: security: systemd-analyze security --offline=yes $unit: exposure $score <= $max_score"
else
	echo "FAIL: security: exposure $score > $max_score; the failing items:"
	printf '%s\n' "$out" | grep '✗' | sed 's/^/    /'
	fail=1
fi

# 2. verify, on a copy that runs the built binary.
if ! grep -q "^ExecStart=$installed " "$unit"; then
	echo "FAIL: verify: $unit: ExecStart= does not start with $installed"
	fail=1
fi
copy="$tmp/sundynix-dispatcher.service"
mkdir -p "$tmp/man/man8"
ln -s "$PWD/docs/man/sundynix-dispatcher.8" "$tmp/man/man8/sundynix-dispatcher.8"
if command -v man >/dev/null 2>&1; then
	sed "s|$installed|$daemon|g" "$unit" >"$copy"
	note="ExecStart=$daemon, MANPATH=$tmp/man"
else
	sed -e "s|$installed|$daemon|g" -e '/^Documentation=/d' "$unit" >"$copy"
	note="ExecStart=$daemon, Documentation= dropped (no man(1) here)"
fi
vout=$(MANPATH="$tmp/man" systemd-analyze verify "$copy" 2>&1)
vrc=$?
if [ "$vrc" -eq 0 ] && [ -z "$vout" ]; then
	echo "ok: verify: systemd-analyze verify printed nothing ($note)"
else
	echo "FAIL: verify: systemd-analyze verify exited $vrc ($note):"
	printf '%s\n' "$vout" | sed 's/^/    /'
	fail=1
fi

exit "$fail"
