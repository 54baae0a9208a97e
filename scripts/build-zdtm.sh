#!/usr/bin/env bash
# Build CRIU's own zdtm test library and static tests from the CRIU source that
# scripts/install-criu.sh fetched (the same version as the installed criu), idempotently.
#
# The tests are built in a copy of test/zdtm under $ZDTM_CACHE (default
# /var/cache/ferryman/zdtm/criu-VERSION), never inside the source tree; make keeps them there,
# so a second run with nothing new to build takes a fraction of a second. Concurrent runs wait
# for each other (flock).
#
# usage: scripts/build-zdtm.sh [TEST...]   (default: every test named in tests/zdtm/curated.txt)
# prints the directory of the built static tests on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_ROOT=${CRIU_SRC_ROOT:-/var/cache/ferryman/criu-src}
CURATED=$HERE/../tests/zdtm/curated.txt
log() { echo "[build-zdtm] $*" >&2; }
die() { echo "[build-zdtm] ERROR: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (it installs the build dependencies with apt)"

tests=("$@")
if ((${#tests[@]} == 0)); then
  mapfile -t tests < <(sed -e 's/#.*//' "$CURATED" | awk 'NF { print $1 }')
fi
((${#tests[@]})) || die "no tests to build"

# What zdtm's lib and static tests link against (see test/zdtm/static/Makefile: -laio, -lcap,
# -lutil/-lrt/-pthread from libc); libbpf, libnl, libtracefs are only for tests not built here.
deps=(gcc make libc6-dev pkgconf libaio-dev libcap-dev)
missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing build dependencies: ${missing[*]}"
  apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null || die "could not install ${missing[*]}"
fi

command -v criu >/dev/null || die "no criu installed: run scripts/install-criu.sh first"
ver=$(criu --version | sed -n 's/^Version: *//p')
src=$SRC_ROOT/criu-$ver
[[ -f $src/test/zdtm/lib/test.c ]] \
  || die "no CRIU $ver source at $src (scripts/install-criu.sh fetches it when it builds criu)"

dest=${ZDTM_CACHE:-/var/cache/ferryman/zdtm/criu-$ver}
mkdir -p "$dest"
exec 9>"$dest.lock"
flock 9
if [[ ! -f $dest/.copied ]]; then
  log "copying test/zdtm of CRIU $ver to $dest"
  rm -rf "$dest/lib" "$dest/static"
  cp -a "$src/test/zdtm/Makefile.inc" "$src/test/zdtm/lib" "$src/test/zdtm/static" "$dest/"
  touch "$dest/.copied"
fi
buildlog=$dest/build.log
make -C "$dest/lib" -j"$(nproc)" libzdtmtst.a >"$buildlog" 2>&1 \
  || { tail -20 "$buildlog" >&2; die "building zdtm's lib failed (log: $buildlog)"; }
make -C "$dest/static" -j"$(nproc)" "${tests[@]}" >>"$buildlog" 2>&1 \
  || { tail -20 "$buildlog" >&2; die "building zdtm static tests failed (log: $buildlog)"; }
log "${#tests[@]} zdtm static tests of CRIU $ver ready in $dest/static"
echo "$dest/static"
