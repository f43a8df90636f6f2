#!/bin/bash
# Where each thread's time goes under prism-eval's hungry-unlabelled load
# (the CPU-hungry request service in cgroup wa: a dispatcher woken every
# 1 ms handing requests to 2 workers that each spin 1.9 ms of CPU per
# request; 4 hogs in wb; equal weights). Per thread over 6 s: CPU run and
# run-queue wait (seconds per second, /proc/PID/task/TID/schedstat), stints
# per second and their mean length, voluntary and involuntary switches;
# per cgroup: CPUs (cpu.stat). Run in the lab guest, EEVDF then each
# scheduler (a name in target/release, or a path to another build), N
# trials (default 3):
#   ci/lab run --timeout 900 -- env N=4 docs/evaluation/stop36/per-thread.sh scx_prism_bpfland /tmp/other/scx_prism_bpfland
set -u
. "$(dirname "$0")/../hungry-lab.sh"
# tid run_ns wait_ns stints voluntary involuntary last_cpu
threads() { for t in /proc/$1/task/*; do echo "$(basename $t) $(cat $t/schedstat) $(awk '/^voluntary_ctxt/{v=$2}/^nonvoluntary_ctxt/{n=$2}END{print v,n}' $t/status) $(awk '{print $39}' $t/stat)"; done; }
snap() { threads $w; for p in "${P[@]}"; do threads $p; done; }
one() {
	local P=() w args=$HUNGRY
	for _ in 1 2 3 4; do hog $R/wb; P+=($!); done
	(echo $BASHPID > $R/wa/cgroup.procs && exec $D/prism-probe $args --duration-s 8 > /dev/null) & w=$!
	sleep 1.5
	a0=$(use $R/wa) b0=$(use $R/wb) t0=$(date +%s%N) cs0=$(awk '/^ctxt/{print $2}' /proc/stat)
	snap > /tmp/threads0
	sleep 6
	a1=$(use $R/wa) b1=$(use $R/wb) t1=$(date +%s%N) cs1=$(awk '/^ctxt/{print $2}' /proc/stat)
	snap > /tmp/threads1
	kill "${P[@]}"; wait $w; wait "${P[@]}" 2>/dev/null
	python3 - $a0 $a1 $b0 $b1 $t0 $t1 $cs0 $cs1 <<'PY'
import sys
a0,a1,b0,b1,t0,t1,c0,c1=map(int,sys.argv[1:])
dt=(t1-t0)/1e9
print("service %.3f hogs %.3f CPUs; %.0f switches/s" % ((a1-a0)/1e6/dt,(b1-b0)/1e6/dt,(c1-c0)/dt))
def rd(f):
    return {l.split()[0]: list(map(int,l.split()[1:])) for l in open(f) if l.strip()}
s0,s1=rd('/tmp/threads0'),rd('/tmp/threads1')
for k,b in s1.items():
    a=s0.get(k)
    if not a: continue
    run,wait,st=(b[0]-a[0])/1e9/dt,(b[1]-a[1])/1e9/dt,(b[2]-a[2])/dt
    print("  %7s cpu%s run %.3f wait %.3f stints %5.0f/s (%.2f ms) vol %5.0f/s invol %5.0f/s"
          % (k,b[5],run,wait,st,run*1e3/st if st else 0,(b[3]-a[3])/dt,(b[4]-a[4])/dt))
PY
}
trials "${N:-3}" "$@"
