#!/usr/bin/env bash
# Install CRIU >= 4.2 (and pycriu) on Debian 12, idempotently.
#
# Debian 12 ships criu 3.17, which fails on recent kernels ("Unexpected rt vDSO area bounds").
# We build CRIU from Debian's own *source package* (sid), fetched with apt, which verifies the
# tarball against the signed Sources index. A second run with a working CRIU takes seconds.
#
# usage: scripts/install-criu.sh [--python PYTHON]   (install pycriu into PYTHON's environment too)
#        scripts/install-criu.sh --pycriu-only --python PYTHON   (only pycriu, from the CRIU
#        source tree an earlier run built; criu itself is left as it is)
set -euo pipefail

MIN_MAJOR=4 MIN_MINOR=2
# Our patches on top of Debian's source; a criu built without them is rebuilt.
BUILD_ID=ps-uncork-1+tls-nodelay-1+kdat-2+lazy-window-1+uffd-track-2+tls-bulk-pace-4+tls-gather-2+ps-timeout-1+lazy-pipeline-2+lazy-ps-socket-2+dry-run-pages-1+relay-frames-3
PREFIX=${CRIU_PREFIX:-/usr/local}
STAMP=$PREFIX/share/ferryman/criu-build
SRC_ROOT=${CRIU_SRC_ROOT:-/var/cache/ferryman/criu-src}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY= PYCRIU_ONLY=0
while (($#)); do
  case $1 in
    --python) PY=$2; shift 2 ;;
    --pycriu-only) PYCRIU_ONLY=1; shift ;;
    *) echo "install-criu: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { echo "[install-criu] $*" >&2; }
die() { echo "[install-criu] ERROR: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (it installs packages and /usr/local/sbin/criu)"

criu_ok() {
  local v
  command -v criu >/dev/null 2>&1 || return 1
  v=$(criu --version 2>/dev/null | sed -n 's/^Version: *//p')
  [[ $v =~ ^([0-9]+)\.([0-9]+) ]] || return 1
  local maj=${BASH_REMATCH[1]} min=${BASH_REMATCH[2]}
  ((maj > MIN_MAJOR || (maj == MIN_MAJOR && min >= MIN_MINOR))) || { log "criu $v is too old (need >= $MIN_MAJOR.$MIN_MINOR)"; return 1; }
  criu check >/dev/null 2>&1 || { log "criu $v is installed but 'criu check' fails"; return 1; }
  [[ "$(cat "$STAMP" 2>/dev/null)" == "$BUILD_ID $(command -v criu)" ]] \
    || { log "criu $v lacks ferryman's patches ($BUILD_ID)"; return 1; }
  return 0
}

# CRIU 4.2.1 keeps the page-server socket corked (TCP_CORK) across its final CLOSE request,
# so the request waits for the kernel's 200 ms cork timeout -- inside the frozen window of
# every dump into a page server. Push it out before waiting for the answer, as CRIU already
# does before its other request/answer exchanges (tcp_nodelay flushes a corked socket).
patch_criu() {
  local f=$1/criu/page-xfer.c
  sed -i '/^int disconnect_from_page_server(void)$/,/^}$/{
/__recv(page_server_sk, &status, sizeof(status), 0)/i\	tcp_nodelay(page_server_sk, true); /* ferryman: flush the corked CLOSE */
}' "$f"
  grep -q 'ferryman: flush the corked CLOSE' "$f" || die "could not patch $f (CRIU changed?)"
  # The TLS handshake sends each record with its own send(): with Nagle on, a flight's second
  # record waits for the peer's delayed ACK (40 ms), in 2 of 3 lazy-pages connections here,
  # inside the frozen window. No Nagle during the handshake; CRIU's own corking after it.
  f=$1/criu/tls.c
  sed -i 's|^#include <sys/socket.h>$|&\n#include <netinet/in.h>\n#include <netinet/tcp.h>|' "$f"
  sed -i '/^int tls_x509_init(int sockfd, bool is_server)$/,/^}$/{
/^\tif (tls_handshake())$/{
i\	setsockopt(sockfd, IPPROTO_TCP, TCP_NODELAY, \&(int){ 1 }, sizeof(int)); /* ferryman: no Nagle in the handshake */
n
a\	setsockopt(sockfd, IPPROTO_TCP, TCP_NODELAY, \&(int){ 0 }, sizeof(int));
}
}' "$f"
  grep -q 'ferryman: no Nagle in the handshake' "$f" && grep -q '^#include <netinet/tcp.h>' "$f" \
    || die "could not patch $f (CRIU changed?)"
  # Whole patches (scripts/criu-patches/*.patch, each says why in its own hunks):
  # - dry-run-no-lazy-pages: with FERRYMAN_DRY_RUN=1 (ferryman's pre-flight dry run, a lazy
  #   dump it declines) the mappings lazy-pages would serve are neither scanned nor spliced
  #   into page pipes nobody reads: 1 GiB's dry run 63-77 -> 26-29 ms, frozen 18-21 ms.
  # - kdat-cache-off-tmpfs: CRIU keeps its kernel-feature cache (/run/criu.kdat) only on a
  #   tmpfs; where /run is not one, every criu call probes the kernel again (~25 ms, twice in
  #   a post-copy restore's frozen window). Kept anywhere; a file from before the boot is stale.
  # - lazy-tail-window: the lazy-pages daemon sent its next background request only once none
  #   was in flight, one contiguous range each, and a fault took that one slot first. After
  #   pre-dumps the lazy pages are the scattered pages dirtied since the last one: the tail
  #   went one page per round trip, nearly all by fault (issue 20: 46 s for 4 MiB). It now
  #   keeps up to 256 KiB of requests in flight, a fault's request going out at once, and
  #   sleeps in epoll while they are (it spun in epoll_wait(0)).
  # - uffd-track-mem: --track-mem-uffd (RPC track_mem_uffd): pre-dumps track dirty pages
  #   with userfaultfd async write-protect and PAGEMAP_SCAN's written bit where the kernel
  #   has no soft-dirty (issue 15); ferryman's agent holds the userfaultfds.
  # - tls-bulk-pace: the TLS page path allocated a 400 KiB buffer per chunk of pages sent and
  #   a packet per 16 KiB record received (a quarter of the page server's time went to page
  #   faults); one 1 MiB buffer now serves the session, and the receive side never writes
  #   past the chunk it was asked for (nor polls the socket first: the rest of a record
  #   GnuTLS already holds is no data there); the page server writes the decrypted pages
  #   straight into the image file instead of through a pipe; the lazy-pages daemon reads all
  #   the records a request has ready, not one per epoll round. FERRYMAN_PAGE_RATE (bytes/s) caps every page socket
  #   of that criu with SO_MAX_PACING_RATE (migrate --max-bandwidth).
  # - tls-gather-records: GnuTLS sends each 16 KiB record with a send() of its own; while
  #   pages go out, the records are gathered and leave in sends of up to 1 MiB (1 GiB of
  #   random pages by hand over CRIU's TLS between the node namespaces: 66 797 sendmsg, 2.7 s;
  #   gathered 0.9-1.1 s, against 0.68 s plain). Flushed before any other send.
  # - usertimeout-page-sockets: a page connection criu opens (dump, pre-dump, lazy-pages)
  #   had no bound on its stalls: a link cut before a pre-dump held its connect for the
  #   kernel's SYN retries (127 s). FERRYMAN_PAGE_TIMEOUT_MS sets TCP_USER_TIMEOUT (the
  #   connect's SYNs too) and keepalive probes every second; a failed connect is an error.
  # - window-pipeline-lazy: the lazy-pages daemon's background window is twice its request
  #   size (at least 256 KiB), so two 4 MiB requests are in flight and the source sends one
  #   while this side copies the other (post-copy 1 GiB, every page there: 2.2 -> 0.87 s plain,
  #   3.6 -> 2.2 s TLS).
  # - xfer-relay-sockets: RPC's ps.fd in a lazy dump: the dump serves its lazy pages on that
  #   connected socket (ferryman's page relay carries them) instead of listening on a port;
  #   TCP options that a socket pair lacks are no warning.
  # - relay-frames-lazy: with FERRYMAN_RELAY_FRAMES set, a lazy dump writes its answers on its
  #   --ps-socket in the page relay's frames, LZ4-compressing the pages itself, and the
  #   lazy-pages daemon decodes them straight into its page buffer: both relays pass the
  #   frames on instead of moving every page through a socket pair and LZ4 in Python.
  # They apply in the order of criu-patches/series: later ones are diffs against the tree the
  # earlier ones made.
  local p
  while read -r p; do
    [[ -z $p || $p == \#* ]] && continue
    [[ -f $HERE/criu-patches/$p ]] || die "criu-patches/series names $p, which is missing"
    patch -d "$1" -p1 --forward --quiet <"$HERE/criu-patches/$p" || die "could not apply $p (CRIU changed?)"
  done <"$HERE/criu-patches/series"
  for p in "$HERE"/criu-patches/*.patch; do
    grep -qxF "$(basename "$p")" "$HERE/criu-patches/series" || die "$(basename "$p") is not in criu-patches/series"
  done
}

src_dir() { find "$SRC_ROOT" -maxdepth 1 -mindepth 1 -type d -name 'criu-*' 2>/dev/null | sort -V | tail -n 1; }

build_criu() {
  log "building CRIU from Debian's source package (sid)"
  local deps=(gcc make pkgconf libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev
    libnl-3-dev libnet1-dev libcap-dev libbsd-dev libgnutls28-dev uuid-dev libnftables-dev
    libaio-dev liblz4-dev python3-protobuf iptables nftables dpkg-dev xz-utils patch)
  local missing=()
  for p in "${deps[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  local list=/etc/apt/sources.list.d/ferryman-sid-src.sources
  if [[ ! -f $list ]]; then
    log "adding a deb-src entry for sid ($list)"
    cat >"$list" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  log "apt-get update"
  apt-get update -qq >/dev/null || die "apt-get update failed"
  if ((${#missing[@]})); then
    log "installing build dependencies: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || die "could not install build dependencies"
  fi
  mkdir -p "$SRC_ROOT"
  local dl; dl=$(mktemp -d "$SRC_ROOT/dl.XXXXXX"); chmod 755 "$dl"
  log "apt-get source --tar-only --download-only criu/sid"
  (cd "$dl" && apt-get source -qq --tar-only --download-only criu/sid >/dev/null) \
    || die "could not download CRIU's source package from Debian (sid)"
  local orig; orig=$(ls "$dl"/criu_*.orig.tar.* | head -n 1)
  [[ -f $orig ]] || die "no orig tarball in $dl"
  local ver; ver=$(basename "$orig" | sed -E 's/^criu_([^.]+\.[^.]+(\.[0-9]+)?)\.orig.*/\1/')
  local dir=$SRC_ROOT/criu-$ver
  rm -rf "$dir"; mkdir -p "$dir"
  tar -xf "$orig" -C "$dir" --strip-components=1
  rm -rf "$dl"
  patch_criu "$dir"
  log "make -j$(nproc) criu lib crit (CRIU $ver)"
  make -C "$dir" -j"$(nproc)" criu lib crit >"$SRC_ROOT/build.log" 2>&1 \
    || { tail -30 "$SRC_ROOT/build.log" >&2; die "CRIU build failed (log: $SRC_ROOT/build.log)"; }
  make -C "$dir" install-criu PREFIX="$PREFIX" >>"$SRC_ROOT/build.log" 2>&1 \
    || die "make install-criu failed (log: $SRC_ROOT/build.log)"
  hash -r
  # An unpatched CRIU on a /run that is no tmpfs leaves this behind, and then no criu can ever
  # save its cache (it creates the file with O_EXCL).
  rm -f /run/criu.kdat.tmp
  mkdir -p "$(dirname "$STAMP")"
  echo "$BUILD_ID $(command -v criu)" >"$STAMP"
}

if ((PYCRIU_ONLY)); then
  [[ -n $PY ]] || die "--pycriu-only needs --python PYTHON"
  [[ -f "$(src_dir)/lib/pycriu/rpc_pb2.py" ]] || die "no built CRIU source tree in $SRC_ROOT: run 'make setup' first"
elif criu_ok; then
  log "criu $(criu --version | sed -n 's/^Version: *//p') at $(command -v criu) passes 'criu check'; keeping it"
else
  build_criu
  criu_ok || die "criu still fails 'criu check' after the build: run 'criu check' to see why"
  log "installed criu $(criu --version | sed -n 's/^Version: *//p') at $(command -v criu)"
fi

if [[ -n $PY ]]; then
  # pycriu's generated rpc_pb2 must know our patches' RPC fields (track_mem_uffd)
  if "$PY" -c 'import pycriu.rpc_pb2 as r; r.criu_opts.DESCRIPTOR.fields_by_name["track_mem_uffd"]' 2>/dev/null; then
    log "pycriu already importable by $PY"
  else
    dir=$(src_dir)
    if [[ -z $dir ]] || ! grep -q track_mem_uffd "$dir/lib/pycriu/rpc_pb2.py" 2>/dev/null; then
      log "no built CRIU source tree for pycriu; building it"
      build_criu
      dir=$(src_dir)
    fi
    log "installing pycriu from $dir/lib into $PY"
    # CRIU's own lib/pyproject.toml makes setuptools warn (a license table, deprecated; a
    # setup.cfg its pyproject overrides): build the same package from a copy with a
    # project description of ours, so that installing prints no deprecation warnings
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    cp -r "$dir/lib/pycriu" "$stage/"
    find "$stage" -name __pycache__ -prune -exec rm -rf {} +
    cat >"$stage/pyproject.toml" <<'TOML'
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "pycriu"
description = "Python bindings for CRIU (CRIU's lib/pycriu, installed by ferryman's scripts/install-criu.sh)"
license = "LGPL-2.1-only"
requires-python = ">=3.6"
dependencies = ["protobuf"]
dynamic = ["version"]

[tool.setuptools]
packages = ["pycriu", "pycriu.images"]

[tool.setuptools.dynamic]
version = {attr = "pycriu.version.__version__"}
TOML
    # a pycriu already there may be of the same version, generated without our patches' RPC
    # fields: replace it (its dependencies stay, or are installed)
    "$PY" -m pip uninstall -q -y pycriu >/dev/null 2>&1 || true
    "$PY" -m pip install -q "$stage" || die "pip install of pycriu failed"
    "$PY" -c 'import pycriu.rpc_pb2' || die "pycriu installed but does not import"
  fi
fi
