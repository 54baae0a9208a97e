#!/usr/bin/env bash
# Build the QEMU test guest for ferryman's VM tests, or reuse the cached one (seconds).
#
# The guest is Debian bookworm (minbase) with Debian's 6.1 kernel, which has soft-dirty page
# tracking (CRIU's pre-dump --track-mem needs it; the host kernel lacks it), criu 3.17 with crit and
# pycriu, python3 (criu 4.2 and its pycriu replace them from the host: see step 3), and what ferryman itself imports: Debian's python3-protobuf, python3-rich and python3-lz4 (4.0.2, for --compress),
# and cryptography and xxhash from PyPI (bookworm's python3-cryptography 38 is older than the >= 42 that
# ferryman needs). For runc containers: Debian's runc and rsync, and a busybox-static rootfs
# template at /opt/ferryman/busybox-rootfs (copied into a bundle per container). For Podman
# containers: Debian's podman 4.3 on runc with cgroupfs and a file events log
# (/etc/containers/containers.conf: vm-init is no systemd), and the same busybox rootfs as a
# tarball with fixed times at /opt/ferryman/busybox-image.tar: `podman import` of it gives the
# same image id on both guests (ferryman's destination checks the image by id).
# Its PID 1 is tests/vm/guest/vm-init, or systemd (run-vm.sh -S: tests/vm/guest/ferryman-vm.service
# runs the command); run guests with tests/vm/run-vm.sh.
#
# Every step runs only when its inputs changed, so a second run takes about a second:
#   1. host tools            missing Debian packages only
#   2. debootstrap rootfs    when the package list changed or the last debootstrap did not finish
#   3. customise rootfs      when this script or tests/vm/guest/* changed
#   4. kernel, initrd, image when the rootfs changed
# Output: $FERRYMAN_VM_WORK/images/{vmlinuz,initrd.img,base.ext4} (guests boot it with
# snapshot=on, so it is never written). A lock makes concurrent runs wait for each other.
#
# Environment: FERRYMAN_VM_WORK (default /var/cache/ferryman/vm, kept on reused machines),
# FERRYMAN_VM_MIRROR (default: the host's own apt source for bookworm), FERRYMAN_VM_IMG_SIZE (2G),
# PYTHON (a python with pip for step 3; default the repository's .venv, else python3).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${FERRYMAN_VM_WORK:-/var/cache/ferryman/vm}
SUITE=bookworm
IMG_SIZE=${FERRYMAN_VM_IMG_SIZE:-2G}
ROOTFS=$WORK/rootfs
OUT=$WORK/images
PKGS=(linux-image-amd64 initramfs-tools udev kmod iproute2 iptables procps psmisc
  netcat-openbsd tini criu python3 python3-protobuf python3-rich python3-lz4 runc rsync busybox-static nftables
  systemd  # systemd: not PID 1 unless run-vm.sh -S (the agent's unit, tests/vm/test_vm_service.py)
  podman netavark)  # Podman 4.3 (tests/vm/scenarios/podman_migrations.py); netavark: debootstrap
                    # cannot resolve containers-common's virtual container-network-stack
BUSYBOX_APPLETS=(sh cat echo nc usleep sleep ls tail head tr sort)  # tests/vm/scenarios
# Not from Debian: ferryman needs cryptography >= 42 (pyproject.toml); bookworm has 38. xxhash
# (the destination's page-file seal) as a wheel too: a Debian package would redo the debootstrap.
PIP_REQS=("cryptography>=42" "xxhash>=3")
GUEST_PY=3.11 GUEST_GLIBC=36   # bookworm's python3 and glibc 2.36: the wheels must fit them

log() { echo "[make-vm $(date +%T)] $*" >&2; }
die() { echo "[make-vm] ERROR: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root (debootstrap, chroot)"

mkdir -p "$WORK" "$OUT" "$WORK/debs"
exec 9>"$WORK/.lock"
flock -n 9 || { log "another make-vm.sh is running; waiting for it"; flock 9; }

# The host's own Debian archive for $SUITE (deb822 *.sources or one-line *.list), so that the
# guest comes from the same mirror or proxy the host is set up with.
host_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    uri=$(awk -v suite="$SUITE" '
      function flush() {
        if (!found && deb && on && uri != "" && (" " suites " ") ~ (" " suite " ")) {
          print uri; found = 1; exit
        }
        deb = 0; on = 1; suites = ""; uri = ""
      }
      BEGIN { on = 1 }
      /^[[:space:]]*$/ { flush(); next }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "enabled:" && tolower($2) == "no" { on = 0 }
      END { flush() }' "$f")
    [[ $uri ]] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    uri=$(awk -v suite="$SUITE" '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit } }' "$f")
    [[ $uri ]] && { echo "$uri"; return; }
  done
}

# 1. host tools
need=()
for p in qemu-system-x86 debootstrap e2fsprogs iproute2 util-linux; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if ((${#need[@]})); then
  log "1/4 installing host tools: ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  log "1/4 host tools present (qemu-system-x86, debootstrap, e2fsprogs)"
fi

# 2. debootstrap (into rootfs.new, renamed when complete)
pkgs_id="$SUITE ${PKGS[*]}"
if [[ ! -f $ROOTFS/.ferryman-pkgs || "$(cat "$ROOTFS/.ferryman-pkgs")" != "$pkgs_id" ]]; then
  mirror=${FERRYMAN_VM_MIRROR:-$(host_mirror)}
  [[ $mirror ]] || die "no apt source for $SUITE on this host: set FERRYMAN_VM_MIRROR"
  log "2/4 debootstrap $SUITE minbase + ${#PKGS[@]} packages from $mirror -> $ROOTFS (~1-2 min)"
  rm -rf "$ROOTFS.new"
  pkgs_csv=$(IFS=,; echo "${PKGS[*]}")
  if ! debootstrap --variant=minbase --cache-dir="$WORK/debs" --include="$pkgs_csv" \
      "$SUITE" "$ROOTFS.new" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
    tail -20 "$WORK/debootstrap.log" >&2
    die "debootstrap failed (log: $WORK/debootstrap.log)"
  fi
  rm -rf "$ROOTFS.new/var/cache/apt/archives/"*.deb "$ROOTFS.new/var/lib/apt/lists/"*_Packages
  echo "$pkgs_id" >"$ROOTFS.new/.ferryman-pkgs"
  rm -rf "$ROOTFS"
  mv "$ROOTFS.new" "$ROOTFS"
else
  log "2/4 rootfs cached ($ROOTFS)"
fi

# The host's CRIU (>= 4.2, built by scripts/install-criu.sh) and its pycriu go into the guest:
# bookworm's criu 3.17 is older than ferryman supports; the host is bookworm too, so the binary
# finds its libraries in the guest (checked below).
HOST_CRIU=${FERRYMAN_VM_CRIU:-$(command -v criu || true)}
[[ -x $HOST_CRIU ]] || die "no criu on this host: run scripts/install-criu.sh (make setup) first"
host_py=${PYTHON:-}
[[ $host_py ]] || { [[ -x $REPO/.venv/bin/python ]] && host_py=$REPO/.venv/bin/python || host_py=python3; }
PYCRIU=$("$host_py" -c 'import os, pycriu; print(os.path.dirname(pycriu.__file__))' 2>/dev/null) \
  || die "pycriu is not importable by $host_py: run 'make setup'"

# 3. customisation: our init, hosts, initramfs modules, PyPI packages, CRIU
custom_id=$({ cat "$0" "$HERE"/guest/* "$HOST_CRIU" "$PYCRIU"/*.py; echo "$pkgs_id"; } \
  | sha256sum | cut -c1-16)
if [[ "$(cat "$ROOTFS/.ferryman-custom" 2>/dev/null)" != "$custom_id" ]]; then
  log "3/4 customising the rootfs (init, hosts, initramfs, ${PIP_REQS[*]})"
  rm -f "$ROOTFS/.ferryman-custom"
  echo vm >"$ROOTFS/etc/hostname"
  printf '127.0.0.1 localhost vm\n10.99.0.1 vm1\n10.99.0.2 vm2\n' >"$ROOTFS/etc/hosts"
  install -m 755 "$HERE/guest/vm-init" "$HERE/guest/vm-setup" "$HERE/guest/vm-run" "$ROOTFS/sbin/"
  # under run-vm.sh -S systemd is PID 1 and this unit runs vm-setup and vm-run
  install -m 644 "$HERE/guest/ferryman-vm.service" "$ROOTFS/etc/systemd/system/"
  mkdir -p "$ROOTFS/etc/systemd/system/multi-user.target.wants"
  ln -sf ../ferryman-vm.service "$ROOTFS/etc/systemd/system/multi-user.target.wants/"
  # virtio drivers and ext4 in the initramfs: the root disk is virtio-blk
  printf 'virtio_pci\nvirtio_blk\next4\n' >"$ROOTFS/etc/initramfs-tools/modules"
  chroot "$ROOTFS" update-initramfs -u -k all >"$WORK/initramfs.log" 2>&1 \
    || { tail -20 "$WORK/initramfs.log" >&2; die "update-initramfs failed"; }
  # PyPI packages into /usr/local (ahead of Debian's dist-packages on sys.path), as wheels
  # built for the guest's python and glibc, so any host python with pip can fetch them.
  py=${PYTHON:-}
  [[ $py ]] || { [[ -x $REPO/.venv/bin/python ]] && py=$REPO/.venv/bin/python || py=python3; }
  "$py" -m pip --version >/dev/null 2>&1 || die "$py has no pip: set PYTHON or run 'make setup'"
  site=$ROOTFS/usr/local/lib/python$GUEST_PY/dist-packages
  plat=(--platform manylinux2014_x86_64)
  for ((g = 17; g <= GUEST_GLIBC; g++)); do plat+=(--platform "manylinux_2_${g}_x86_64"); done
  rm -rf "$site"; mkdir -p "$site"
  "$py" -m pip install -q --disable-pip-version-check --no-compile --target "$site" \
    --only-binary=:all: --implementation cp --python-version "$GUEST_PY" "${plat[@]}" \
    "${PIP_REQS[@]}" >"$WORK/pip.log" 2>&1 \
    || { tail -20 "$WORK/pip.log" >&2; die "pip install ${PIP_REQS[*]} failed"; }
  rm -rf "${site:?}/bin"
  install -m 755 "$HOST_CRIU" "$ROOTFS/usr/local/sbin/criu"
  missing=$(chroot "$ROOTFS" ldd /usr/local/sbin/criu | grep 'not found' || true)
  [[ -z $missing ]] || die "the host's criu needs libraries the guest lacks: $missing"
  rm -rf "$site/pycriu"
  cp -r "$PYCRIU" "$site/pycriu"
  rm -rf "$site/pycriu/__pycache__"
  # a container rootfs template: busybox-static and its applets (tests copy it per bundle)
  tmpl=$ROOTFS/opt/ferryman/busybox-rootfs
  rm -rf "$tmpl"; mkdir -p "$tmpl/bin" "$tmpl/data"
  cp "$ROOTFS/bin/busybox" "$tmpl/bin/busybox"
  for a in "${BUSYBOX_APPLETS[@]}"; do ln -s busybox "$tmpl/bin/$a"; done
  # the same rootfs as an image tarball for `podman import`, identical bytes on every build
  tar -C "$tmpl" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -cf "$ROOTFS/opt/ferryman/busybox-image.tar" .
  # Podman's units stay off: under run-vm.sh -S they would run podman at boot (TCG: seconds)
  rm -f "$ROOTFS"/etc/systemd/system/{default,sockets,timers}.target.wants/podman*
  mkdir -p "$ROOTFS/etc/containers"
  printf '%s\n' '[engine]' 'runtime = "runc"' 'cgroup_manager = "cgroupfs"' \
    'events_logger = "file"' >"$ROOTFS/etc/containers/containers.conf"
  echo "$custom_id" >"$ROOTFS/.ferryman-custom"
else
  log "3/4 customisation cached ($custom_id)"
fi

# 4. kernel, initrd and the ext4 root image
if [[ "$(cat "$OUT/.ferryman-image" 2>/dev/null)" != "$custom_id" || ! -f $OUT/base.ext4 ]]; then
  log "4/4 building $OUT/base.ext4 ($IMG_SIZE, sparse)"
  cp -L "$ROOTFS/vmlinuz" "$OUT/vmlinuz.tmp"
  cp -L "$ROOTFS/initrd.img" "$OUT/initrd.img.tmp"
  rm -f "$OUT/base.ext4.tmp"
  mkfs.ext4 -q -F -L vmroot -d "$ROOTFS" "$OUT/base.ext4.tmp" "$IMG_SIZE" >/dev/null
  # renames, so that guests still running keep the files they opened
  mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
  mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
  mv "$OUT/base.ext4.tmp" "$OUT/base.ext4"
  echo "$custom_id" >"$OUT/.ferryman-image"
else
  log "4/4 image cached ($OUT/base.ext4)"
fi
kver=$(basename "$(readlink "$ROOTFS/vmlinuz")"); kver=${kver#vmlinuz-}
criu_v=$(chroot "$ROOTFS" /usr/local/sbin/criu --version | sed -n 's/^Version: *//p')
crypto_v=$(find "$ROOTFS/usr/local/lib/python$GUEST_PY/dist-packages" -maxdepth 1 \
  -name 'cryptography-*.dist-info' -printf '%f' | sed 's/^cryptography-//; s/\.dist-info$//')
runc_v=$(chroot "$ROOTFS" runc --version | sed -n 's/^runc version //p')
podman_v=$(chroot "$ROOTFS" dpkg-query -W -f='${Version}' podman)
log "ready: $OUT (kernel $kver, criu $criu_v, runc $runc_v, podman $podman_v, cryptography $crypto_v)"
