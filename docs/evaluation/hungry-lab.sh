# Sourced by the lab scripts that study prism-eval's hungry-unlabelled load
# (stop35/bpf-cost.sh, stop36/per-thread.sh): its two cgroups of equal
# cpu.weight (wa: the CPU-hungry request service, wb: the hogs), the
# service's arguments, and the trial loop. The sourcing script defines
# one(), a single measurement under whatever scheduler is loaded.
R=/sys/fs/cgroup D=${D:-/work/main/target/release}
HUNGRY="--workers 2 --interval-us 1000 --work-us 1900 --from-arrival --cpu-work"
echo +cpu > $R/cgroup.subtree_control
mkdir -p $R/wa $R/wb
hog() { (echo $BASHPID > "$1/cgroup.procs" && exec sh -c 'while :; do :; done') & }
use() { awk '/usage_usec/{print $2}' "$1/cpu.stat"; }
# trials N SCHED...: N times, one() under EEVDF, then under each scheduler
# (a name in $D, or a path to another build), loaded and unloaded each time
trials() {
	local n=$1 i s bin pid
	shift
	for i in $(seq "$n"); do
		echo "== trial $i eevdf"; one
		for s in "$@"; do
			echo "== trial $i $s"
			bin=$s; [[ $s == */* ]] || bin=$D/$s
			$bin > /tmp/sched.log 2>&1 & pid=$!
			for _ in $(seq 60); do [ "$(cat /sys/kernel/sched_ext/state)" = enabled ] && break; sleep 0.5; done
			one
			kill -INT $pid; wait $pid
		done
	done
}
