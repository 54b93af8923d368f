#!/bin/sh
# Builds build/sundynix-dispatcher_VERSION_ARCH.deb with dpkg-buildpackage.
# The build runs on a copy of the tree in build/deb/: the package build starts
# with `make clean` (rm -rf build) and leaves debhelper's files in debian/, and
# neither should touch the working tree. The version must be the Makefile's.
set -eu
cd "$(dirname "$0")/.."

version=$(dpkg-parsechangelog -S Version)
make_version=$(sed -n 's/^VERSION *:= *//p' Makefile)
if [ "$version" != "$make_version" ]; then
	echo "build-deb: debian/changelog is at $version but the Makefile's VERSION is $make_version" >&2
	exit 1
fi
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=sundynix-dispatcher_${version}_${arch}.deb
work=build/deb
src=$work/sundynix-dispatcher-$version

rm -rf "$work"
mkdir -p "$src"
tar -cf - --exclude=./build --exclude=./.git . | tar -xf - -C "$src"
(cd "$src" && dpkg-buildpackage -us -uc -b)
cp "$work/$deb" build/
echo "build-deb: build/$deb"
