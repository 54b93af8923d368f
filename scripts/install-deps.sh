#!/bin/sh
# Installs what building, testing and running the demo need on Debian 12.
# Idempotent: installs only packages that are missing. Used by the README and by CI.
set -eu

# prometheus: the integration test scrapes the daemon with the real server and
# checks its output with promtool (about 10 s to install, no recommends).
PKGS="build-essential pkg-config clang libclang-rt-14-dev
libuv1-dev libnats-dev libcurl4-openssl-dev libjansson-dev libsystemd-dev libssl-dev libmicrohttpd-dev
libcmocka-dev nats-server openssl systemd procps curl python3 prometheus"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
	SUDO="sudo"
fi
echo "install-deps: installing:$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
