#!/usr/bin/env bash
# Guest side of tests/vm/test_vm_precopy.py: one two-guest boot (run-vm.sh -2), run in both guests.
#   vm1 (source): starts tests/support/workload.py, pre-dumps it twice with --track-mem into a
#       page server on vm2, dumps it (final), sends the remaining images to vm2 over the link.
#   vm2 (destination): a CRIU page server per iteration, receives the images, restores the
#       workload, and has it verify every page of its memory (SIGUSR1 -> status JSON).
# The guests step in lock-step through a handshake port: vm2 says "ready" when it listens.
# Results for the test are lines "@@ KEY JSON". Settings: MIB, RATE (pages/s), GAP (s between
# iterations), STEP_TMO (s any one step may take), THP (transparent huge pages: never by default;
# with Debian's default, always, soft-dirty tracks the workload's buffer in 2 MiB units and
# scattered writes soon mark all of it dirty, so pre-copy gains nothing).
set -Eeuo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
MIB=${MIB:-128} RATE=${RATE:-100} GAP=${GAP:-2} STEP_TMO=${STEP_TMO:-240} THP=${THP:-never}
IMG=/tmp/img SYNC_PORT=29 PS_PORT=27 TAR_PORT=28
: "${VM_NAME:?run me with tests/vm/run-vm.sh -2}" "${VM_PEER:?}"
mkdir -p "$IMG/1" "$IMG/2" "$IMG/3"

emit() { echo "@@ $1 $2"; }
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
logs_on_error() {
  echo "precopy.sh: $VM_NAME failed at line $1; CRIU logs:" >&2
  for f in "$IMG"/*/*.log; do
    if [[ -f $f ]]; then echo "--- $f" >&2; tail -n 15 "$f" >&2; fi
  done
}
trap 'logs_on_error $LINENO' ERR

# JSON object of stats-dump's dump entry (pycriu 4.2's decoder: the guest's crit 3.17 needs
# the pycriu 3.17 that make-vm.sh replaced)
stats() { python3 -c 'import json, sys; from pycriu import images
print(json.dumps(images.load(open(sys.argv[1], "rb"))["entries"][0]["dump"]))' "$1/stats-dump"; }
# total size of pages-*.img in a directory, in 4 KiB pages
pages_in() { du -cb "$1"/pages-*.img 2>/dev/null | awk 'END { printf "%d", $1 / 4096 }'; }

# vm2: answer one "ready?" on the handshake port (blocks until vm1 asks)
say_ready() { echo ready | timeout "$STEP_TMO" nc -N -l "$SYNC_PORT" >/dev/null; }
# vm1: wait until vm2 answers
await_ready() {
  local end=$((SECONDS + STEP_TMO))
  until nc -w 2 "$VM_PEER" "$SYNC_PORT" </dev/null 2>/dev/null | grep -q ready; do
    ((SECONDS < end)) || { echo "precopy.sh: vm2 not ready after ${STEP_TMO}s" >&2; return 1; }
    sleep 0.3
  done
}
wait_gone() {  # PIDFILE: wait until that daemon exits
  local pid end=$((SECONDS + STEP_TMO))
  pid=$(cat "$1")
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < end)) || { echo "precopy.sh: pid $pid still running" >&2; return 1; }
    sleep 0.1
  done
}
# status JSON of the workload, newer than $2 (epoch seconds)
status_after() {
  python3 - "$1" "$2" "$STEP_TMO" <<'PY'
import json, sys, time
path, after, tmo = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
end = time.time() + tmo
while time.time() < end:
    try:
        with open(path) as fh:
            st = json.load(fh)
        if st["time"] > after:
            print(json.dumps(st))
            sys.exit(0)
    except (OSError, ValueError):
        pass
    time.sleep(0.2)
sys.exit("no status newer than %s in %s" % (after, path))
PY
}

echo "$THP" >/sys/kernel/mm/transparent_hugepage/enabled
emit "$VM_NAME-guest" "{\"kernel\": \"$(uname -r)\", \"thp\": \"$THP\", \"criu\": \"$(criu --version | sed -n 's/^Version: *//p')\", \"soft_dirty\": $(criu check --feature mem_dirty_track >/dev/null 2>&1 && echo true || echo false)}"

src() {
  # no files open but /dev/null (restore needs the same files on vm2); a high PID: it must be free on vm2, where criu restores it with the same PID
  echo 29999 >/proc/sys/kernel/ns_last_pid
  cp "$REPO/tests/support/workload.py" /tmp/workload.py
  (cd /tmp && exec setsid python3 /tmp/workload.py --mib "$MIB" --dirty-rate "$RATE" \
      --heartbeat-ms 10 --status /tmp/wl.status </dev/null >/dev/null 2>&1) &
  disown  # criu dump kills it: no "Killed" notice from bash
  local st pid
  st=$(status_after /tmp/wl.status 0)
  pid=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["pid"])' "$st")
  emit workload "$st"
  local i t0 t1 prev=()
  for i in 1 2 3; do
    await_ready
    if ((i > 1)); then prev=(--prev-images-dir "../$((i - 1))"); fi
    local action=pre-dump
    if ((i == 3)); then action=dump; fi
    t0=$(now)
    criu "$action" -t "$pid" -D "$IMG/$i" "${prev[@]}" --track-mem \
      --page-server --address "$VM_PEER" --port "$PS_PORT" -o "$action.log" -v4
    t1=$(now)
    emit "src-$i" "{\"action\": \"$action\", \"ms\": $(ms "$t0" "$t1"), \"stats\": $(stats "$IMG/$i")}"
    if ((i < 3)); then sleep "$GAP"; fi
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "precopy.sh: workload still running after dump" >&2
    return 1
  fi
  await_ready
  tar -C "$IMG/3" -cf - --exclude='*.log' . | timeout "$STEP_TMO" nc -N "$VM_PEER" "$TAR_PORT"
  t1=$(now)
  emit src-shipped "{\"freeze_to_shipped_ms\": $(ms "$t0" "$t1")}"
  # what a later ferryman-in-the-guest needs: its dependencies and pycriu, with src/ shared
  local out rc=0
  out=$(PYTHONPATH="$REPO/src" python3 - 2>&1 <<'PY'
import json, subprocess, sys
import cryptography, google.protobuf, rich, pycriu.rpc_pb2  # noqa: F401
from importlib.metadata import version
v = {p: version(p) for p in ("cryptography", "protobuf", "rich")}
cmd = [sys.executable, "-m", "ferryman"]
v["ferryman"] = subprocess.run(cmd + ["--version"], check=True, capture_output=True, text=True).stdout.strip()
subprocess.run(cmd + ["pki", "init", "/tmp/pki"], check=True, capture_output=True, text=True)
print(json.dumps(v))
PY
  ) || rc=$?
  if ((rc == 0)); then
    emit ferryman "{\"ok\": true, \"versions\": $out}"
  else
    emit ferryman "$(python3 -c 'import json,sys; print(json.dumps({"ok": False, "error": sys.argv[1][-800:]}))' "$out")"
  fi
}

dst() {
  local i t0 t1 prev=()
  for i in 1 2 3; do
    if ((i > 1)); then prev=(--prev-images-dir "../$((i - 1))"); fi
    criu page-server -D "$IMG/$i" "${prev[@]}" --port "$PS_PORT" -d \
      --pidfile "/tmp/ps$i.pid" -o page-server.log
    say_ready
    wait_gone "/tmp/ps$i.pid"
    emit "dst-$i" "{\"pages\": $(pages_in "$IMG/$i")}"
  done
  timeout "$STEP_TMO" nc -N -l "$TAR_PORT" | tar -C "$IMG/3" -xf - &
  local rx=$!
  until [[ $(ss -Hltn "sport = :$TAR_PORT") ]]; do sleep 0.1; done
  say_ready
  wait "$rx"
  t0=$(now)
  criu restore -D "$IMG/3" -d --pidfile /tmp/restored.pid -o restore.log -v4
  t1=$(now)
  local pid
  pid=$(cat /tmp/restored.pid)
  emit dst-restore "{\"ms\": $(ms "$t0" "$t1"), \"pid\": $pid}"
  sleep 1
  t0=$(date +%s.%N)
  kill -USR1 "$pid"
  emit dst-status "$(status_after /tmp/wl.status "$t0")"
  kill "$pid"
}

case $VM_NAME in
  vm1) src ;;
  vm2) dst ;;
  *) echo "precopy.sh: unknown VM_NAME $VM_NAME" >&2; exit 2 ;;
esac
echo "precopy.sh: $VM_NAME ok"
