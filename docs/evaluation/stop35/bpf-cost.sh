#!/bin/bash
# Where does the CPU go under prism-eval's hungry-unlabelled load (the CPU-
# hungry request service in cgroup wa, 4 hogs in wb, equal weights)? Each
# cgroup's CPUs and the root's over 6 s, context switches per second, and
# each BPF program's calls and cost (kernel.bpf_stats_enabled; bpftool must
# be installed on the host: the guest runs the host's userspace). Run in the
# lab guest, EEVDF then each scheduler, N trials (default 2):
#   ci/lab run --timeout 600 -- env N=2 docs/evaluation/stop35/bpf-cost.sh scx_prism_bpfland scx_prism
# D: the directory of the binaries (default target/release).
set -u
. "$(dirname "$0")/../hungry-lab.sh"
rootuse() { awk '/usage_usec/{print $2}' $R/cpu.stat; }
snap() { bpftool prog show --json 2>/dev/null > $1; }
one() {
	local P=() args=$HUNGRY
	for _ in 1 2 3 4; do hog $R/wb; P+=($!); done
	(echo $BASHPID > $R/wa/cgroup.procs && exec $D/prism-probe $args --duration-s 8 > /tmp/probe.json) & w=$!
	sleep 1.5
	snap /tmp/s0.json
	a0=$(use $R/wa) b0=$(use $R/wb) r0=$(rootuse) t0=$(date +%s%N) cs0=$(awk '/^ctxt/{print $2}' /proc/stat)
	sleep 6
	a1=$(use $R/wa) b1=$(use $R/wb) r1=$(rootuse) t1=$(date +%s%N) cs1=$(awk '/^ctxt/{print $2}' /proc/stat)
	snap /tmp/s1.json
	kill "${P[@]}"; wait $w; wait "${P[@]}" 2>/dev/null
	python3 - $a0 $a1 $b0 $b1 $r0 $r1 $t0 $t1 $cs0 $cs1 <<'PY'
import json,sys
a0,a1,b0,b1,r0,r1,t0,t1,c0,c1=map(int,sys.argv[1:])
dt=(t1-t0)/1e9
print("service %.3f hogs %.3f root %.3f CPUs; %.0f switches/s" % ((a1-a0)/1e6/dt,(b1-b0)/1e6/dt,(r1-r0)/1e6/dt,(c1-c0)/dt))
s0={p['id']:p for p in json.load(open('/tmp/s0.json'))}
s1={p['id']:p for p in json.load(open('/tmp/s1.json'))}
rows=[]
for i,p in s1.items():
    q=s0.get(i)
    if not q or 'run_cnt' not in p: continue
    n=p['run_cnt']-q.get('run_cnt',0); ns=p['run_time_ns']-q.get('run_time_ns',0)
    if n: rows.append((ns,n,p.get('name','?')))
rows.sort(reverse=True)
tot=sum(r[0] for r in rows)
print("  BPF total %.1f ms/s (%.3f CPUs)" % (tot/1e6/dt, tot/1e9/dt))
for ns,n,name in rows[:12]:
    print("  %-24s %8.0f/s  %6.1f us each  %6.1f ms/s" % (name, n/dt, ns/n/1e3, ns/1e6/dt))
PY
}
sysctl -q kernel.bpf_stats_enabled=1
trials "${N:-2}" "$@"
