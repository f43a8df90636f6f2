#!/bin/bash
# Runs in the lab guest (ci/lab run -- env N=12 SCHEDS="A B" docs/evaluation/stop38/messaging-regimes.sh):
# N interleaved trials of the messaging lab test's load (prism-messaging
# --messages 200), under EEVDF and then each scheduler in $SCHEDS (paths;
# default scx_prism), loaded fresh for every run. Per run: seconds, messages
# per read, context switches (/proc/stat), rescheduling IPIs
# (/proc/interrupts) and the scheduler's nr_* counters' deltas (its .bss,
# through bpftool and jq: Debian's bpftool and jq packages).
export PATH=$PATH:/usr/sbin
D=${D:-/work/main/target/release}
SCHED=${SCHED:-$D/scx_prism}
N=${N:-12}
R=/sys/fs/cgroup; mkdir -p $R/msgr
ctr() {
  bpftool map show --json | jq -r '.[] | select(.name|test("bss$")) | .id' | while read id; do
      bpftool map dump id $id --json 2>/dev/null; done | jq -s -c '.'
}
snap() {
  local c i
  c=$(awk '/^ctxt/{print $2}' /proc/stat)
  i=$(awk '/RES:/{s=0; for(k=2;k<=NF;k++) if ($k ~ /^[0-9]+$/) s+=$k; print s}' /proc/interrupts)
  echo "$c $i"
}
run() { (echo $BASHPID > $R/msgr/cgroup.procs; exec $D/prism-messaging --messages 200); }
report() {
  python3 - "$@" <<'PY'
import sys, json
a=list(map(int,sys.argv[1].split())); b=list(map(int,sys.argv[2].split()))
def walk(x, out):
    if isinstance(x, dict):
        for k, v in x.items():
            if isinstance(v, int) and k.startswith('nr_'): out[k] = out.get(k, 0) + v
            else: walk(v, out)
    elif isinstance(x, list):
        for v in x: walk(v, out)
    return out
ca,cb=walk(json.loads(sys.argv[3] or '[]'),{}),walk(json.loads(sys.argv[4] or '[]'),{})
o=json.loads(sys.argv[5])
d={k[3:]:cb[k]-ca.get(k,0) for k in sorted(cb) if cb[k]!=ca.get(k,0)}
print(f"{sys.argv[6]} {o['seconds']:.2f}s {o['messages_per_read']:.1f}/read ctxt {b[0]-a[0]} RES {b[1]-a[1]} {d}", flush=True)
PY
}
one() { local a b ca cb out; a=$(snap); ca=$(ctr); out=$(run); b=$(snap); cb=$(ctr); report "$a" "$b" "$ca" "$cb" "$out" "$1"; }
for i in $(seq $N); do
  one eevdf
  for S in ${SCHEDS:-$SCHED}; do
  $S "$@" > /tmp/sched.log 2>&1 & pid=$!
  for _ in $(seq 60); do [ "$(cat /sys/kernel/sched_ext/state)" = enabled ] && break; sleep 0.5; done
  one $(basename $S)
  kill -INT $pid; wait $pid
  done
done
