#!/usr/bin/env bash
# Boot one test guest, or two on a private L2 link, run a command in each, print the output and
# exit with the command's status. Build the image first with tests/vm/make-vm.sh.
#
# usage: run-vm.sh [options] -- CMD...     CMD runs with bash in the guest, as root
#   -2          two guests, vm1 (10.99.0.1) and vm2 (10.99.0.2), on a private link carried by a
#               QEMU socket netdev over host loopback; CMD runs in both, and tells them apart by
#               $VM_NAME (vm1|vm2); $VM_IP and $VM_PEER are the addresses on the link
#   -r DIR      share DIR read-only at the same path in the guest (repeatable)
#   -s DIR      share DIR read-write at the same path (repeatable)
#   -C DIR      working directory of CMD (default: the first share, else /root)
#   -m MB       memory per guest (default 1024)      -c N   vCPUs per guest (default 2)
#   -t SECS     time limit per guest, boot included (default 900)
#   -f H:G      forward 127.0.0.1:H on the host to port G of the (first) guest (repeatable)
#   -o DIR      keep NAME.out, NAME.rc and NAME.console.log of each guest in DIR
#   -k          no CMD: a root shell on the console of one guest (exit the shell to power off)
#   -S          systemd as PID 1 (guest/ferryman-vm.service runs CMD) instead of guest/vm-init
# Exit status: CMD's (with -2: vm1's, or vm2's if vm1's is 0); 255 when a guest gave no status
# (crashed, timed out, killed), then the tail of its console log goes to stderr.
# Environment: FERRYMAN_VM_WORK (as for make-vm.sh), VM_ACCEL (default tcg,thread=multi: this
# machine's /dev/kvm cannot run Debian kernels).
set -uo pipefail
WORK=${FERRYMAN_VM_WORK:-/var/cache/ferryman/vm}
IMG=$WORK/images
MEM=1024 CPUS=2 TMO=900 PAIR=0 KEEP=0 CWD='' OUTDIR='' INIT=/sbin/vm-init
SHARES=() FWD=()
usage() { sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2; }
while getopts "2r:s:C:m:c:t:f:o:kSh" o; do
  case $o in
    2) PAIR=1 ;;
    r) SHARES+=("ro $(realpath "$OPTARG")") ;;
    s) SHARES+=("rw $(realpath "$OPTARG")") ;;
    C) CWD=$OPTARG ;;
    m) MEM=$OPTARG ;;
    c) CPUS=$OPTARG ;;
    t) TMO=$OPTARG ;;
    f) FWD+=("hostfwd=tcp:127.0.0.1:${OPTARG%%:*}-:${OPTARG##*:}") ;;
    o) OUTDIR=$OPTARG ;;
    k) KEEP=1 ;;
    S) INIT=/lib/systemd/systemd ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[[ ${1:-} == -- ]] && shift
CMD="$*"
die() { echo "run-vm: $*" >&2; exit 2; }
((KEEP)) && [[ $CMD ]] && die "-k takes no command"
((KEEP)) || [[ $CMD ]] || die "no command (see -h)"
((KEEP && PAIR)) && die "-k boots one guest"
for f in vmlinuz initrd.img base.ext4; do
  [[ -f $IMG/$f ]] || die "no $IMG/$f: run tests/vm/make-vm.sh first"
done
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run tests/vm/make-vm.sh"
for s in "${SHARES[@]}"; do [[ ${s#* } =~ ^/[A-Za-z0-9._/+-]*$ ]] || die "unsupported share path: ${s#* }"; done
[[ $CWD ]] || { ((${#SHARES[@]})) && CWD=${SHARES[0]#* }; }
[[ $OUTDIR ]] && mkdir -p "$OUTDIR"
mkdir -p "$WORK/run"
RUN=$(mktemp -d "$WORK/run/XXXXXX")
PIDS=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# prepare NAME IP PEER: the control directory shared as "ctl", and the QEMU arguments in ARGS
prepare() {
  local name=$1 ip=$2 peer=$3 ctl=$RUN/$1 i=0 s
  mkdir -p "$ctl"
  printf "VM_NAME='%s' VM_IP='%s' VM_PEER='%s' VM_CWD='%s'\n" "$name" "$ip" "$peer" "$CWD" >"$ctl/env"
  ((KEEP)) || printf '%s\n' "$CMD" >"$ctl/cmd.sh"
  : >"$ctl/shares"
  local net=user,id=n0,restrict=on
  [[ $name != vm2 ]] && ((${#FWD[@]})) && net+=,$(IFS=,; echo "${FWD[*]}")
  # shellcheck disable=SC2054  # commas inside QEMU option values
  ARGS=(-name "$name" -accel "${VM_ACCEL:-tcg,thread=multi}" -m "$MEM" -smp "$CPUS"
    -display none -no-reboot -monitor none -nodefaults
    -kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img"
    -append "console=ttyS0 root=/dev/vda rw init=$INIT net.ifnames=0 quiet loglevel=3 panic=-1 mitigations=off"
    -drive "file=$IMG/base.ext4,format=raw,if=virtio,snapshot=on,cache=unsafe"
    -device virtio-rng-pci
    -netdev "$net" -device virtio-net-pci,netdev=n0
    -virtfs "local,path=$ctl,mount_tag=ctl,security_model=none")
  if ((KEEP)); then ARGS+=(-serial mon:stdio); else ARGS+=(-serial "file:$ctl/console.log"); fi
  for s in "${SHARES[@]}"; do
    i=$((i + 1))
    echo "s$i ${s%% *} ${s#* }" >>"$ctl/shares"
    ARGS+=(-virtfs "local,path=${s#* },mount_tag=s$i,security_model=none$([[ ${s%% *} == ro ]] && echo ,readonly=on)")
  done
}

# boot NAME: start the prepared guest in the background (TMPDIR: QEMU's snapshot overlay)
boot() {
  TMPDIR=$RUN/$1 timeout -k 10 "$TMO" qemu-system-x86_64 "${ARGS[@]}" &
  PIDS+=($!)
}

# report NAME: print its output, keep its files, return its status (255: none)
report() {
  local name=$1 ctl=$RUN/$1 rc
  rc=$(cat "$ctl/rc" 2>/dev/null) || rc=255
  if [[ -f $ctl/out ]]; then
    ((PAIR)) && echo "===== $name (rc=$rc)"
    cat "$ctl/out"
  fi
  if ((rc == 255)); then
    echo "run-vm: $name gave no exit status (crashed, timed out or killed); console tail:" >&2
    tail -n 40 "$ctl/console.log" >&2 2>/dev/null
  fi
  if [[ $OUTDIR ]]; then
    echo "$rc" >"$OUTDIR/$name.rc"
    cp "$ctl/console.log" "$OUTDIR/$name.console.log" 2>/dev/null
    cp "$ctl/out" "$OUTDIR/$name.out" 2>/dev/null || : >"$OUTDIR/$name.out"
  fi
  return "$rc"
}

listening() { [[ $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

if ((KEEP)); then
  prepare vm "" ""
  TMPDIR=$RUN/vm timeout --foreground -k 10 "$TMO" qemu-system-x86_64 "${ARGS[@]}"
  rc=$?
elif ((!PAIR)); then
  prepare vm "" ""
  boot vm
  wait "${PIDS[0]}"
  report vm
  rc=$?
else
  # vm2 listens on a free loopback port, vm1 connects once it does
  port=
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    listening "$p" || { port=$p; break; }
  done
  [[ $port ]] || die "no free port for the private link"
  link="-device virtio-net-pci,netdev=n1,mac=52:54:00:99:00"
  prepare vm2 10.99.0.2/24 10.99.0.1
  read -ra extra <<<"-netdev socket,id=n1,listen=127.0.0.1:$port $link:02"
  ARGS+=("${extra[@]}")
  boot vm2
  for _ in $(seq 100); do
    listening "$port" && break
    kill -0 "${PIDS[0]}" 2>/dev/null || break
    sleep 0.1
  done
  listening "$port" || { report vm2; die "vm2 did not listen on 127.0.0.1:$port"; }
  prepare vm1 10.99.0.1/24 10.99.0.2
  read -ra extra <<<"-netdev socket,id=n1,connect=127.0.0.1:$port $link:01"
  ARGS+=("${extra[@]}")
  boot vm1
  # when one guest ends without success, the other would wait for it until its time limit:
  # give it a short grace (to finish its own report), then stop it
  wait -n "${PIDS[@]}"
  for i in 0 1; do
    kill -0 "${PIDS[$i]}" 2>/dev/null && continue
    name=$([[ $i == 0 ]] && echo vm2 || echo vm1)
    if [[ "$(cat "$RUN/$name/rc" 2>/dev/null)" != 0 ]]; then
      other=${PIDS[$((1 - i))]}
      for _ in $(seq 150); do kill -0 "$other" 2>/dev/null || break; sleep 0.2; done
      kill "$other" 2>/dev/null
    fi
  done
  wait "${PIDS[@]}"
  report vm1
  rc1=$?
  report vm2
  rc2=$?
  rc=$rc1
  ((rc == 0)) && rc=$rc2
fi
if ((rc != 0)) && [[ -z $OUTDIR ]] && ((!KEEP)); then
  rm -rf "$WORK/run/last-failure"
  find "$RUN" -name 'vl.*' -delete 2>/dev/null  # QEMU's snapshot overlays
  mv "$RUN" "$WORK/run/last-failure" && echo "run-vm: logs kept in $WORK/run/last-failure" >&2
fi
rm -rf "$RUN"
exit "$rc"
