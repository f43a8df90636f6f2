#!/bin/bash
# Do tasks that sleep and wake cost (or win) their cgroup CPU against a
# cgroup of CPU hogs of equal cpu.weight? Run in the lab guest from the
# repository root, after a release build:
#   ci/lab run --timeout 300 -- docs/evaluation/stop27/sleepers-share.sh
#   ci/lab run --timeout 300 -- env WORKLOAD=messaging docs/evaluation/stop27/sleepers-share.sh
# cgroup B: 4 CPU hogs. cgroup A, WORKLOAD=sleeper (default): 2 CPU hogs and
# prism-probe waking every INTERVAL us (default 1000) for WORK us (default
# 20); WORKLOAD=messaging: prism-messaging (160 threads) over and over.
# Prints each cgroup's CPU (ms per s, 8 s windows) under EEVDF, scx_prism
# (with SCHED_ARGS) and scx_prism_bpfland, ROUNDS times (default 2).
set -eu
R=/sys/fs/cgroup
echo +cpu > $R/cgroup.subtree_control
mkdir -p $R/sleeper-a $R/sleeper-b
in_cgroup() { local cg=$1; shift; sh -c "echo \$\$ > $cg/cgroup.procs; exec $*" & }
usage() { awk '/usage_usec/{print $2}' "$1/cpu.stat"; }
measure() {
	local a0 b0 a1 b1
	a0=$(usage $R/sleeper-a); b0=$(usage $R/sleeper-b); sleep 8
	a1=$(usage $R/sleeper-a); b1=$(usage $R/sleeper-b)
	echo "$1: A $(((a1 - a0) / 8000)) ms/s  B $(((b1 - b0) / 8000)) ms/s"
}
under() { # NAME BINARY ARGS...
	local name=$1 s; shift
	"$@" >/dev/null 2>&1 & s=$!
	until grep -q enabled /sys/kernel/sched_ext/state; do sleep 0.2; done
	sleep 2
	measure "$name"
	kill -INT $s; wait $s || true
}
for _ in 1 2 3 4; do in_cgroup $R/sleeper-b "sh -c 'while :; do :; done'"; done
case ${WORKLOAD:-sleeper} in
sleeper)
	for _ in 1 2; do in_cgroup $R/sleeper-a "sh -c 'while :; do :; done'"; done
	in_cgroup $R/sleeper-a "target/release/prism-probe --interval-us ${INTERVAL:-1000} --work-us ${WORK:-20} --duration-s 600 >/dev/null"
	;;
messaging)
	in_cgroup $R/sleeper-a "sh -c 'while :; do target/release/prism-messaging --messages 50 >/dev/null; done'"
	;;
*) echo "WORKLOAD is sleeper or messaging" >&2; exit 2 ;;
esac
trap 'kill $(jobs -p) 2>/dev/null' EXIT
sleep 2
for _ in $(seq "${ROUNDS:-2}"); do
	measure EEVDF
	# shellcheck disable=SC2086
	under scx_prism target/release/scx_prism ${SCHED_ARGS:-}
	under scx_prism_bpfland target/release/scx_prism_bpfland
done
