#!/usr/bin/env bash
# A full cold migration between two "hosts" on this machine: network namespaces A and B on a
# private bridge, a ferryman agent in each, a 256 MiB workload in its own PID namespace on A.
# Everything it creates is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d /tmp/ferryman-demo.XXXXXX)
TAG=fmdemo$$
SW=${TAG}s A=${TAG}a B=${TAG}b
log() { echo -e "\033[1m[demo]\033[0m $*" >&2; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n ${NEWPID:-} ]] && kill -9 "$NEWPID" 2>/dev/null || true
  [[ -n ${WPID:-} ]] && kill -9 "$WPID" 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true
  ip netns del "$SW" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
in_ns() { local ns=$1; shift; nsenter --net=/var/run/netns/"$ns" -- "$@"; }

log "creating nodes A (10.88.0.1) and B (10.88.0.2) as network namespaces on a bridge"
ip netns add "$SW"; in_ns "$SW" ip link add br0 type bridge; in_ns "$SW" ip link set br0 up
i=1
for n in "$A" "$B"; do
  ip netns add "$n"
  ip link add eth0 netns "$n" type veth peer name "${n}p" netns "$SW"
  in_ns "$SW" ip link set "${n}p" master br0 up
  in_ns "$n" ip addr add "10.88.0.$i/24" dev eth0; in_ns "$n" ip link set eth0 up
  in_ns "$n" ip link set lo up; i=$((i + 1))
done

log "cluster PKI: a CA and a certificate per node"
$PY -m ferryman pki init "$WORK/pki" >/dev/null
$PY -m ferryman pki issue a --pki "$WORK/pki" --ip 10.88.0.1 >/dev/null
$PY -m ferryman pki issue b --pki "$WORK/pki" --ip 10.88.0.2 >/dev/null

log "starting the agent on B (mutual TLS on 10.88.0.2:7070)"
nsenter --net=/var/run/netns/"$B" -- $PY -m ferryman serve --listen 10.88.0.2:7070 --pki "$WORK/pki" --name b \
  --state-dir "$WORK/state-b" 2>"$WORK/agent-b.log" &
pids+=($!)
for _ in $(seq 100); do in_ns "$B" grep -q ':1B9E .* 0A ' /proc/net/tcp && break; sleep 0.1; done

log "starting a workload on A: 256 MiB with a known pattern, 1 ms heartbeat, own PID namespace"
nsenter --net=/var/run/netns/"$A" -- unshare -p -f setsid $PY tests/support/workload.py --mib 256 --seed demo \
  --status "$WORK/status.json" </dev/null >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 300); do [[ -f $WORK/status.json ]] && break; sleep 0.1; done
WPID=$(cat /proc/"${pids[-1]}"/task/*/children | awk '{print $1}')
[[ -n $WPID ]] || { log "the workload did not start"; exit 1; }
log "workload runs on A as PID $WPID"

log "ferryman migrate $WPID --to 10.88.0.2:7070"
in_ns "$A" $PY -m ferryman migrate "$WPID" --to 10.88.0.2:7070 --pki "$WORK/pki" --name a \
  --state-dir "$WORK/state-a" --report "$WORK/report.json"
NEWPID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["destination_pid"])' "$WORK/report.json")

log "checking the workload on B (PID $NEWPID): it verifies every page of its memory"
before=$(stat -c %Y.%N "$WORK/status.json" 2>/dev/null || true)
kill -USR1 "$NEWPID"
for _ in $(seq 200); do grep -q '"running"' "$WORK/status.json" 2>/dev/null && break; sleep 0.05; done
$PY - "$WORK/status.json" "$WPID" <<'PY'
import json, os, sys
st = json.load(open(sys.argv[1]))
gone = not os.path.exists(f"/proc/{sys.argv[2]}")
print(f"[demo] on B: {st['pages']} pages verified, {st['bad_pages']} bad; longest heartbeat gap "
      f"{st['max_gap_ms']} ms; gone from A: {gone}", file=sys.stderr)
sys.exit(0 if st["bad_pages"] == 0 and gone else 1)
PY
log "done: the workload moved from A to B with its memory intact"
