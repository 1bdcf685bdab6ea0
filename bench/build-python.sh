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

# The production image's configure options (docker-library/python), with Debian's compiler
# flags and, as that image has since 2025 on amd64 and arm64, frame pointers (for perf).
OPTIONS=(--enable-loadable-sqlite-extensions --enable-shared --with-system-expat)
CFLAGS_EXTRA="$(dpkg-buildflags --get CFLAGS)"
case "$(dpkg --print-architecture)" in
amd64 | arm64) CFLAGS_EXTRA="$CFLAGS_EXTRA -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer" ;;
esac
PROFILE=()
if [ "$KIND" = pgo ]; then
	OPTIONS+=(--enable-optimizations --with-lto)
	# The profile run is CPython's own (its --pgo list of tests) without test_generators:
	# that test passes on the finished builds, alone and after the list's others, but
	# failed twice in a row in the instrumented build on the tenth pass's machine (on the
	# ninth's it passed), and since 3.13 a failing test of the profile run stops the
	# build. Generators are exercised by the rest of the list.
	TESTS=$(python3 -c 'import ast, sys
tree = ast.parse(open("Lib/test/libregrtest/pgo.py").read())
tests = next(ast.literal_eval(n.value) for n in tree.body
             if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "PGO_TESTS")
print(" ".join(t for t in tests if t != "test_generators"))')
	PROFILE=("PROFILE_TASK=-m test --pgo --timeout= $TESTS")
fi
# The build's output goes to a log, whose end is shown if a step fails (the PGO build
# fails when a test of its profile run fails).
LOG=/tmp/build-python-$KIND.log
echo "building into $PREFIX; the build's output is in $LOG"
trap 'status=$?; rm -rf "$SRC"; if [ $status -ne 0 ]; then tail -n 40 "$LOG" >&2; fi' EXIT
(
	./configure --prefix="$PREFIX" "${OPTIONS[@]}"
	make -j "$(nproc)" "${PROFILE[@]}" \
		EXTRA_CFLAGS="$CFLAGS_EXTRA" \
		LDFLAGS="$(dpkg-buildflags --get LDFLAGS) -Wl,-rpath=$PREFIX/lib"
	make install
) >"$LOG" 2>&1
"$PREFIX/bin/python3.13" -c 'import sqlite3, ssl, sysconfig; print(sysconfig.get_config_var("CONFIG_ARGS"))'
