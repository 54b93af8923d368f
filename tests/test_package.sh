#!/bin/sh
# Builds the Debian package (scripts/build-deb.sh) and checks it the way an
# operator meets it on a bare Debian 12:
#  - lintian reports no error;
#  - in a `debootstrap --variant=minbase bookworm` root under build/,
#    `apt-get install ./DEB` resolves the dependencies; both binaries run;
#    the installed config passes --check-config; the unit is installed with
#    ExecStart=/usr/sbin/..., not enabled; `systemd-analyze verify --root`
#    passes once systemd is in the root;
#  - an edited /etc/sundynix/dispatcher.json survives a reinstall and an
#    upgrade whose own copy changed (--force-confold);
#  - `apt-get purge` leaves none of the files `dpkg -L` listed;
#  - with systemd-nspawn, the root boots: installing starts nothing,
#    `systemctl enable --now` starts the daemon against Debian's nats-server,
#    the stub answers a chat, reload keeps the process, an upgrade restarts it
#    (still enabled) and removing the package stops it.
# Needs root (debootstrap, chroot, mount). If the Debian archive named in the
# host's apt sources (or MIRROR=URL) cannot be reached, prints a SKIP line and
# exits 0. The minbase root is cached as build/debootstrap-bookworm-minbase.tar.gz
# (delete it to start from a fresh one) and the root itself is removed at exit.
# Ends with "N passed, N failed"; exit status 1 if any check failed.
set -u

cd "$(dirname "$0")/.." || exit 2
suite=bookworm
cache=build/debootstrap-$suite-minbase.tar.gz
root=$PWD/build/pkgtest-root
pkg=sundynix-dispatcher
passed=0
failed=0

if [ "$(id -u)" != 0 ]; then
	echo "FAIL: test_package.sh needs root (debootstrap, chroot, mount)"
	exit 1
fi
tmp=$(mktemp -d /tmp/sundynix-pkgtest.XXXXXX) || exit 2
log=$tmp/log

remove_root() {
	if mountpoint -q "$root/proc" 2>/dev/null; then
		umount "$root/proc"
	fi
	rm -rf --one-file-system "$root"
}
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	remove_root
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() {
	passed=$((passed + 1))
	echo "ok: $*"
}
bad() {
	failed=$((failed + 1))
	echo "FAIL: $*"
}
# check DESCRIPTION COMMAND...: one check; shows the command's output on failure.
check() {
	desc=$1
	shift
	if "$@" >"$log" 2>&1; then
		ok "$desc"
	else
		bad "$desc"
		sed 's/^/    /' "$log"
	fi
}
# Runs a command inside the root with a clean environment.
inroot() {
	chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@"
}
summary() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit $?
}

# The Debian mirror this host's apt uses for $suite: deb822 .sources first,
# then one-line .list entries.
host_mirror() {
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" }
			{
				uri = ""; found = 0
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^URIs:/) { split($i, u, " "); uri = u[2] }
					if ($i ~ /^Suites:/) {
						n = split($i, s, " ")
						for (j = 2; j <= n; j++) if (s[j] == suite) found = 1
					}
				}
				if (found && uri != "") { print uri; exit }
			}' "$f"
	done
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk -v suite="$suite" '$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i + 1) == suite) { print $i; exit }
		}'
}

# 1. Build and lint.
version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=${pkg}_${version}_${arch}.deb
start=$(date +%s)
if ! ./scripts/build-deb.sh >"$tmp/build.log" 2>&1; then
	bad "build: scripts/build-deb.sh failed:"
	tail -n 40 "$tmp/build.log" | sed 's/^/    /'
	summary
fi
ok "build: build/$deb ($(($(date +%s) - start)) s)"

lintian --fail-on error "build/$deb" >"$tmp/lintian.log" 2>&1
lrc=$?
grep -v '^running with root privileges' "$tmp/lintian.log" | sed 's/^/    lintian: /'
if [ "$lrc" -eq 0 ]; then
	ok "lintian: no error"
else
	bad "lintian: exit status $lrc"
fi

# 2. A bare Debian 12 root.
mirror=${MIRROR:-$(host_mirror | head -n 1)}
if [ -z "$mirror" ]; then
	echo "SKIP: no $suite mirror in this host's apt sources (set MIRROR=URL); the root tests did not run"
	summary
fi
if ! curl -fsS --max-time 20 -o /dev/null "$mirror/dists/$suite/Release" 2>"$log"; then
	echo "SKIP: the Debian archive $mirror is not reachable ($(cat "$log")); the root tests did not run"
	summary
fi

remove_root
mkdir -p "$root"
start=$(date +%s)
if [ -f "$cache" ]; then
	tar -xzf "$cache" -C "$root" || {
		bad "root: unpacking $cache failed"
		summary
	}
	how="unpacked $cache"
else
	if ! debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
		bad "root: debootstrap --variant=minbase $suite failed:"
		tail -n 20 "$tmp/debootstrap.log" | sed 's/^/    /'
		summary
	fi
	tar --numeric-owner -C "$root" -cf - . | gzip -1 >"$cache.part" && mv "$cache.part" "$cache"
	how="debootstrap --variant=minbase $suite, cached as $cache"
fi
ok "root: $how ($(($(date +%s) - start)) s)"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
mkdir -p "$root/root/pkgtest"
cp "build/$deb" "$root/root/pkgtest/"

# 3. Install into the bare root: apt resolves the dependencies.
start=$(date +%s)
inroot apt-get update -qq >"$tmp/install.log" 2>&1 &&
	inroot apt-get install -y --no-install-recommends "/root/pkgtest/$deb" >>"$tmp/install.log" 2>&1
rc=$?
if [ "$rc" -eq 0 ]; then
	ok "install: apt-get install ./$deb in the bare root ($(($(date +%s) - start)) s)"
else
	bad "install: apt-get install ./$deb exited $rc:"
	tail -n 30 "$tmp/install.log" | sed 's/^/    /'
	summary
fi
check "install: postinst says the service is not enabled" \
	grep -q "installed but not enabled" "$tmp/install.log"
check "run: sundynix-dispatcher --version" sh -c \
	"chroot '$root' /usr/sbin/sundynix-dispatcher --version | grep -Fx 'sundynix-dispatcher $version'"
check "run: sundynixctl --version" sh -c \
	"chroot '$root' /usr/bin/sundynixctl --version | grep -F 'sundynixctl $version'"
check "run: --check-config -c /etc/sundynix/dispatcher.json" \
	inroot sundynix-dispatcher --check-config -c /etc/sundynix/dispatcher.json
unit=$root/lib/systemd/system/$pkg.service
check "layout: unit in /lib/systemd/system with ExecStart=/usr/sbin/$pkg" \
	grep -q "^ExecStart=/usr/sbin/$pkg " "$unit"
check "layout: man pages, docs and the NATS permissions example" sh -c "
	cd '$root' && ls usr/share/man/man8/$pkg.8.gz usr/share/man/man1/sundynixctl.1.gz \
		usr/share/doc/$pkg/deploy.md.gz usr/share/doc/$pkg/copyright \
		usr/share/doc/$pkg/examples/nats-permissions.conf"
check "layout: /etc/sundynix/dispatcher.json is a conffile" sh -c \
	"chroot '$root' dpkg-query -W -f='\${Conffiles}' $pkg | grep -q '^ /etc/sundynix/dispatcher.json '"
check "layout: the unit is not enabled" sh -c \
	"! ls '$root'/etc/systemd/system/*.wants/$pkg.service 2>/dev/null"

# systemd-analyze verify resolves ExecStart=, ExecReload= and the targets in
# the root, so the root needs systemd (any server running the unit has it).
if inroot apt-get install -y --no-install-recommends systemd >"$log" 2>&1; then
	check "unit: systemd-analyze verify --root on the installed unit" sh -c \
		"out=\$(MANPATH='$root/usr/share/man' systemd-analyze verify --root='$root' $pkg.service 2>&1); \
		rc=\$?; printf '%s\n' \"\$out\"; [ \$rc -eq 0 ] && [ -z \"\$out\" ]"
else
	bad "unit: installing systemd in the root failed:"
	sed 's/^/    /' "$log"
fi

# 4. The conffile: the operator's edit survives a reinstall, and an upgrade
# whose own copy changed (dpkg --force-confold keeps it, new one as .dpkg-dist).
conf=$root/etc/sundynix/dispatcher.json
sed -i 's/"max_inflight": [0-9]*/"max_inflight": 321/' "$conf"
check "conffile: edited (max_inflight 321)" grep -q '"max_inflight": 321' "$conf"
check "conffile: dpkg -i --force-confold of the same version" \
	inroot dpkg -i --force-confold "/root/pkgtest/$deb"
check "conffile: the edit survives the reinstall" grep -q '"max_inflight": 321' "$conf"

upgrade_version=$version+pkgtest1
upgrade_deb=${pkg}_${upgrade_version}_${arch}.deb
unpacked=$tmp/upgrade
if ! { dpkg-deb -R "build/$deb" "$unpacked" &&
	sed -i "s/^Version: .*/Version: $upgrade_version/" "$unpacked/DEBIAN/control" &&
	sed -i 's/"connect_timeout_ms": [0-9]*/"connect_timeout_ms": 2500/' \
		"$unpacked/etc/sundynix/dispatcher.json" &&
	dpkg-deb --root-owner-group -b "$unpacked" "$root/root/pkgtest/$upgrade_deb"; } >"$log" 2>&1; then
	bad "conffile: repacking $deb as $upgrade_version failed:"
	sed 's/^/    /' "$log"
fi
check "conffile: apt-get install ./$upgrade_deb -o Dpkg::Options::=--force-confold" \
	inroot apt-get install -y -o Dpkg::Options::=--force-confold "/root/pkgtest/$upgrade_deb"
check "conffile: $upgrade_version is installed" sh -c \
	"[ \"\$(chroot '$root' dpkg-query -W -f='\${Version}' $pkg)\" = '$upgrade_version' ]"
check "conffile: the edit survives the upgrade" grep -q '"max_inflight": 321' "$conf"
check "conffile: the package's new copy is dispatcher.json.dpkg-dist" \
	grep -q '"connect_timeout_ms": 2500' "$conf.dpkg-dist"
check "conffile: the kept file still passes --check-config" \
	inroot sundynix-dispatcher --check-config -c /etc/sundynix/dispatcher.json

# 5. Purge: nothing the package installed is left, except directories other
# packages own too.
inroot dpkg-query -L "$pkg" >"$tmp/files" 2>&1
check "purge: apt-get purge $pkg" inroot apt-get purge -y "$pkg"
check "purge: dpkg no longer knows the package" sh -c \
	"! chroot '$root' dpkg-query -W -f='\${db:Status-Status}' $pkg 2>/dev/null | grep -qv not-installed"
left=""
while read -r path; do
	case "$path" in /*) ;; *) continue ;; esac
	[ "$path" = /. ] && continue
	if [ -e "$root$path" ] || [ -L "$root$path" ]; then
		inroot dpkg-query -S "$path" >/dev/null 2>&1 || left="$left $path"
	fi
done <"$tmp/files"
extra=$(cd "$root" && find etc var/lib/systemd -name "*$pkg*" 2>/dev/null | tr '\n' ' ')
check "purge: none of the $(wc -l <"$tmp/files") paths of dpkg -L is left (nor /etc/sundynix, nor systemd state)" \
	sh -c "[ -z '$left$extra' ] || { echo 'left:$left $extra'; exit 1; }"

# 6. Boot the root with systemd-nspawn (private network) and run the service.
if ! command -v systemd-nspawn >/dev/null 2>&1; then
	echo "SKIP: systemd-nspawn not found (package systemd-container); the boot checks did not run"
	summary
fi
if ! inroot apt-get install -y --no-install-recommends nats-server >"$log" 2>&1; then
	bad "boot: installing nats-server in the root failed:"
	sed 's/^/    /' "$log"
	summary
fi
{
	echo '#!/bin/sh'
	echo "pkg=$pkg deb=$deb upgrade_deb=$upgrade_deb upgrade_version=$upgrade_version"
	cat <<'EOF'
# Runs in the booted root as pkgtest.service: one ok:/FAIL: line per check in
# boot.result, then "done", then powers the container off.
exec >/root/pkgtest/boot.log 2>&1
set -x
unit=$pkg.service
t() {
	d=$1
	shift
	if "$@"; then echo "ok: boot: $d"; else echo "FAIL: boot: $d"; fi >>/root/pkgtest/boot.result
}
mainpid() { systemctl show -p MainPID --value "$unit"; }
t "Debian's nats-server is active (127.0.0.1:4222, as the default config expects)" \
	systemctl is-active --quiet nats-server
t "dpkg -i $deb under a running systemd" dpkg -i "/root/pkgtest/$deb"
t "the install started nothing" sh -c "! systemctl is-active --quiet $unit"
t "the install enabled nothing" sh -c "! systemctl is-enabled --quiet $unit"
t "systemctl enable --now $unit (returns on READY=1)" timeout 60 systemctl enable --now "$unit"
t "the service is active" systemctl is-active --quiet "$unit"
t "sundynixctl chat gets the stub's reply through it" \
	sh -c 'timeout 30 sundynixctl chat Hello | grep -q .'
pid=$(mainpid)
systemctl reload "$unit"
sleep 1
t "systemctl reload keeps the process ($pid)" \
	sh -c "systemctl is-active --quiet $unit && [ $(mainpid) = $pid ]"
t "upgrade to $upgrade_version" dpkg -i --force-confold "/root/pkgtest/$upgrade_deb"
t "the upgrade restarted the running service ($pid -> $(mainpid))" \
	sh -c "systemctl is-active --quiet $unit && [ $(mainpid) != $pid ]"
t "it is still enabled after the upgrade" systemctl is-enabled --quiet "$unit"
t "dpkg -r $pkg" dpkg -r "$pkg"
t "the removal stopped the service" sh -c "! systemctl is-active --quiet $unit"
journalctl -u "$unit" --no-pager
echo done >>/root/pkgtest/boot.result
systemctl poweroff
EOF
} >"$root/root/pkgtest/boot-check.sh"
chmod +x "$root/root/pkgtest/boot-check.sh"
cat >"$root/etc/systemd/system/pkgtest.service" <<'EOF'
[Unit]
Description=tests/test_package.sh checks inside the booted root
After=multi-user.target nats-server.service

[Service]
Type=oneshot
ExecStart=/root/pkgtest/boot-check.sh
EOF
ln -sf /etc/systemd/system/pkgtest.service "$root/etc/systemd/system/multi-user.target.wants/pkgtest.service"
umount "$root/proc"
start=$(date +%s)
timeout 300 systemd-nspawn --register=no --keep-unit --private-network --quiet \
	--console=read-only -D "$root" --boot >"$tmp/boot-console.log" 2>&1
rc=$?
secs=$(($(date +%s) - start))
if [ -f "$root/root/pkgtest/boot.result" ]; then
	while read -r line; do
		case "$line" in
		ok:*) ok "${line#ok: }" ;;
		FAIL:*) bad "${line#FAIL: }" ;;
		esac
	done <"$root/root/pkgtest/boot.result"
fi
if grep -qx "done" "$root/root/pkgtest/boot.result" 2>/dev/null; then
	ok "boot: systemd-nspawn --boot ran the checks and powered off ($secs s)"
	[ "$failed" -eq 0 ] || sed 's/^/    /' "$root/root/pkgtest/boot.log"
else
	bad "boot: the checks did not finish (systemd-nspawn exited $rc after $secs s); console and log:"
	tail -n 30 "$tmp/boot-console.log" | sed 's/^/    /'
	tail -n 40 "$root/root/pkgtest/boot.log" 2>/dev/null | sed 's/^/    /'
fi

summary
