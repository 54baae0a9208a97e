#!/usr/bin/env bash
# Set up everything ferryman needs on a Debian 12 machine, idempotently (seconds when done):
# system tools, CRIU >= 4.2 (built from Debian's source package if needed), the virtualenv
# with ferryman and its Python dependencies, and the sysctl lazy pages need.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
log() { echo "[setup] $*" >&2; }

[[ $(id -u) == 0 ]] || { echo "[setup] ERROR: run as root (CRIU and namespaces need it)" >&2; exit 1; }

# 1. system tools: nsenter/unshare (util-linux), ip (iproute2), nft/iptables for CRIU's network lock,
#    runc (containers), rsync (their files), busybox-static (the tests' container rootfs),
#    podman, netavark and conntrack (Podman containers: Debian 12's 4.3, its bridge network,
#    the NAT state of their published connections); redis-server, nginx-light and memcached
#    (real services the tests move: tests/integration/test_real_services.py); gcc and
#    libc6-dev (a static helper for the tests' containers: tests/support/locker.c)
need=()
for p in util-linux iproute2 procps nftables iptables python3-venv runc rsync busybox-static podman netavark conntrack redis-server nginx-light memcached gcc libc6-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 2. the virtualenv (re-installed when pyproject.toml changes)
if [[ ! -x $VENV/bin/python || pyproject.toml -nt $VENV/.ferryman-stamp ]]; then
  log "creating $VENV with ferryman and its dependencies"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e '.[dev,bench]'
  touch "$VENV/.ferryman-stamp"
else
  log "$VENV is up to date"
fi

# 2b. ferryman's own bytecode, as a wheel's install compiles it: an editable install under
# PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module at every start (~80 ms of
# each 'ferryman migrate'); stale files are recompiled, in memory, by Python itself
"$VENV/bin/python" -m compileall -q src >/dev/null

# 3. CRIU (and pycriu into the virtualenv)
scripts/install-criu.sh --python "$VENV/bin/python"

# 4. lazy pages (post-copy) need 4 MiB pipes when we lack CAP_SYS_RESOURCE
if (($(cat /proc/sys/fs/pipe-max-size) < 4194304)); then
  log "sysctl fs.pipe-max-size=4194304 (needed by CRIU's lazy pages)"
  sysctl -q -w fs.pipe-max-size=4194304 || log "WARNING: could not raise fs.pipe-max-size"
fi
for tool in runc rsync busybox podman; do
  command -v "$tool" >/dev/null || { echo "[setup] ERROR: $tool is missing after apt-get install" >&2; exit 1; }
done
log "ready: $("$VENV/bin/ferryman" --version), $(criu --version | head -1), $(runc --version | head -1)"
