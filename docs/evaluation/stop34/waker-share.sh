#!/bin/bash
# Does a thread that wakes every millisecond cost its cgroup CPU against a
# cgroup of CPU hogs of equal cpu.weight? Run in the lab guest:
#   ci/lab run --timeout 900 -- docs/evaluation/stop34/waker-share.sh 3 DIR scx_prism scx_prism_bpfland
#   ci/lab run --timeout 900 -- env LAYOUT=pod docs/evaluation/stop34/waker-share.sh 3 DIR ...
#   ci/lab run --timeout 900 -- env WORKLOAD=hungry docs/evaluation/stop34/waker-share.sh 3 DIR ...
# DIR holds the scheduler binaries and prism-probe (copy them from
# target/release to compare builds). Cgroup b: 4 hogs. Cgroup a: 2 hogs and
# prism-probe waking every 1 ms for 50 us (LAYOUT=pod: the hogs in a/app,
# the waker in a/side, a pod's sidecar); WORKLOAD=hungry: instead the
# CPU-hungry request service alone (prism-eval's hungry scenario). Per
# trial: EEVDF, then each scheduler; prints a's and b's CPUs over 6 s.
set -u
R=/sys/fs/cgroup
echo +cpu > $R/cgroup.subtree_control
mkdir -p $R/wa $R/wb
if [ "${LAYOUT:-}" = pod ]; then
	echo +cpu > $R/wa/cgroup.subtree_control
	mkdir -p $R/wa/app $R/wa/side
	A=$R/wa/app SC=$R/wa/side
else
	A=$R/wa SC=$R/wa
fi
N=$1 D=$2
shift 2
hog() { (echo $BASHPID > "$1/cgroup.procs" && exec sh -c 'while :; do :; done') & }
use() { awk '/usage_usec/{print $2}' "$1/cpu.stat"; }
one() {
	local P=() a0 b0 t0 a1 b1 t1 w args="--interval-us 1000 --work-us 50"
	if [ "${WORKLOAD:-}" = hungry ]; then
		args="--workers 2 --interval-us 1000 --work-us 1900 --from-arrival --cpu-work"
	else
		for _ in 1 2; do hog $A; P+=($!); done
	fi
	for _ in 1 2 3 4; do hog $R/wb; P+=($!); done
	(echo $BASHPID > $SC/cgroup.procs && exec $D/prism-probe $args --duration-s 8 > /dev/null) & w=$!
	sleep 1.5
	a0=$(use $R/wa) b0=$(use $R/wb) t0=$(date +%s%N)
	sleep 6
	a1=$(use $R/wa) b1=$(use $R/wb) t1=$(date +%s%N)
	kill "${P[@]}"; wait $w; wait "${P[@]}" 2>/dev/null
	python3 -c "dt=($t1-$t0)/1e9; print('a %.3f b %.3f' % (($a1-$a0)/1e6/dt, ($b1-$b0)/1e6/dt))"
}
for i in $(seq "$N"); do
	line="trial $i: eevdf $(one)"
	for s in "$@"; do
		$D/$s > /tmp/$s.$i.log 2>&1 & pid=$!
		for _ in $(seq 60); do [ "$(cat /sys/kernel/sched_ext/state)" = enabled ] && break; sleep 0.5; done
		[ "$(cat /sys/kernel/sched_ext/state)" = enabled ] || { echo "$s did not enable: $(tail -3 /tmp/$s.$i.log)"; exit 1; }
		line="$line | $s $(one)"
		kill -INT $pid; wait $pid
	done
	echo "$line"
done
