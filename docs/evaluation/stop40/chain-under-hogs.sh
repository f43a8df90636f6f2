#!/bin/bash
# Runs in the lab guest (ci/lab run -- env N=5 SCHEDS="A B" docs/evaluation/stop40/chain-under-hogs.sh):
# N interleaved trials of an unlabelled RPC chain (prism-rpc: STAGES
# services, RATE requests a second, WORK us a hop) beside 2 x nCPU
# unlabelled hogs in a sibling cgroup, under EEVDF and then each scheduler
# in $SCHEDS (paths; default scx_prism), loaded fresh for every run. Per run:
# the chain's p50/p99 and how often its services were preempted.
D=${D:-/work/main/target/release}
N=${N:-5}; RATE=${RATE:-100}; WORK=${WORK:-1000}; STAGES=${STAGES:-5}; SECS=${SECS:-4}
R=/sys/fs/cgroup/chainab; mkdir -p $R/chain $R/hogs
echo "+cpu" > $R/cgroup.subtree_control 2>/dev/null
hogs() { hog_pids=(); for _ in $(seq $((2 * $(nproc)))); do (echo $BASHPID > $R/hogs/cgroup.procs; exec sh -c 'while :; do :; done') & hog_pids+=($!); done; }
one() {
  local out
  hogs; sleep 0.5
  out=$(sh -c "echo \$\$ > $R/chain/cgroup.procs; exec $D/prism-rpc --stages $STAGES --rate $RATE --work-us $WORK --duration-s $SECS")
  kill "${hog_pids[@]}"; wait "${hog_pids[@]}" 2>/dev/null
  python3 -c '
import sys, json
o = json.loads(sys.argv[2]); s = o["summary"]
print("%-22s p50 %9.0f us  p99 %9.0f us  services preempted %d" % (sys.argv[1], s["p50_us"], s["p99_us"], o["services_preempted"]), flush=True)' "$1" "$out"
}
for i in $(seq $N); do
  one eevdf
  for S in ${SCHEDS:-$D/scx_prism}; do
    $S > /tmp/sched.log 2>&1 & pid=$!
    for _ in $(seq 60); do [ "$(cat /sys/kernel/sched_ext/state)" = enabled ] && break; sleep 0.5; done
    one "$(basename "$(dirname "$S")")/$(basename "$S")"
    kill -INT $pid; wait $pid
  done
done
