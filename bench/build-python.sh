#!/usr/bin/env bash
# Build CPython as the production image's (python:3.13-slim) is built, to measure with it:
#
#   bash bench/build-python.sh            # PGO + LTO, into /opt/cpython/3.13.5-pgo (16 min on 2 cores)
#   bash bench/build-python.sh plain      # the same source without them (2 min)
#
# then `make bench BENCH_PYTHON=/opt/cpython/3.13.5-pgo/bin/python3.13` (a venv of its own,
# .venv-bench). pyenv's default build, which `make install` uses, has neither profile-guided
# nor link-time optimisation. The machines reach no python.org, so the source is the
# upstream tarball as Debian ships it (trixie's python3.13, the .orig.tar.xz), checked
# against the SHA-256 in Debian's source index.
set -euo pipefail

VERSION=3.13.5
SHA256=93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640
KIND=${1:-pgo}
case $KIND in
pgo | plain) ;;
*)
	echo "usage: bash bench/build-python.sh [pgo|plain]" >&2
	exit 2
	;;
esac
PREFIX=/opt/cpython/$VERSION-$KIND
TARBALL=/tmp/python3.13_$VERSION.orig.tar.xz
URL=http://deb.debian.org/debian/pool/main/p/python3.13/python3.13_$VERSION.orig.tar.xz

if [ -x "$PREFIX/bin/python3.13" ]; then
	echo "$PREFIX/bin/python3.13 is there already"
	exit 0
fi
test -f "$TARBALL" || curl -fsS -m 300 -o "$TARBALL" "$URL"
echo "$SHA256  $TARBALL" | sha256sum -c -

SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
tar -xJf "$TARBALL" -C "$SRC" --strip-components=1
cd "$SRC"

# The production image's configure options (docker-library/python), with Debian's compiler flags.
OPTIONS=(--enable-loadable-sqlite-extensions --enable-shared --with-system-expat)
if [ "$KIND" = pgo ]; then
	OPTIONS+=(--enable-optimizations --with-lto)
fi
./configure --prefix="$PREFIX" "${OPTIONS[@]}" >/dev/null
make -j "$(nproc)" \
	EXTRA_CFLAGS="$(dpkg-buildflags --get CFLAGS)" \
	LDFLAGS="$(dpkg-buildflags --get LDFLAGS) -Wl,-rpath=$PREFIX/lib" >/dev/null
make install >/dev/null
"$PREFIX/bin/python3.13" -c 'import sqlite3, ssl, sysconfig; print(sysconfig.get_config_var("CONFIG_ARGS"))'
