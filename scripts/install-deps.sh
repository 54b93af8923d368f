#!/bin/sh
# Installs what building, testing and running the demo need on Debian 12.
# Idempotent: installs only packages that are missing. Used by the README and by CI.
# --package: instead, what `make deb` needs (dpkg-dev, debhelper and the
# Build-Depends of debian/control); --package-test: that plus what
# `make test-package` needs (lintian, debootstrap, systemd-analyze,
# systemd-nspawn, curl).
set -eu

# prometheus: the integration test scrapes the daemon with the real server and
# checks its output with promtool (about 10 s to install, no recommends).
# linux-perf: `make bench` counts the daemon's syscalls per token with it.
PKGS="build-essential pkg-config clang libclang-rt-14-dev
libuv1-dev libnats-dev libcurl4-openssl-dev libjansson-dev libsystemd-dev libssl-dev libmicrohttpd-dev
libcmocka-dev nats-server openssl systemd procps curl python3 prometheus linux-perf"
builddeps=0

case "${1:-}" in
"") ;;
--package)
	PKGS="build-essential dpkg-dev debhelper"
	builddeps=1
	;;
--package-test)
	PKGS="build-essential dpkg-dev debhelper lintian debootstrap systemd systemd-container curl"
	builddeps=1
	;;
*)
	echo "usage: $0 [--package | --package-test]" >&2
	exit 2
	;;
esac
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then
	SUDO="sudo"
fi

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
else
	echo "install-deps: installing:$missing"
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# debian/control is the one list of what the package build needs.
if [ "$builddeps" = 1 ] && ! dpkg-checkbuilddeps 2>/dev/null; then
	echo "install-deps: installing the Build-Depends of debian/control"
	[ -n "$missing" ] || $SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get build-dep -y -qq --no-install-recommends ./
fi
