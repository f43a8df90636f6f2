#!/bin/bash
# The kubelet's tree of testkit's contract::kubelet_tree(2) (weights from
# requests of 100m/500m/1000m with 2/4/1 busy threads, a BestEffort pod with
# 2, one hog in system.slice), under the scheduler named (none: EEVDF); each
# busy leaf's share of the tree's CPU over 6 s. PROBE=1 adds prism-probe's
# request load (2 workers, 300 us every 2 ms, unlabelled) in a sibling cgroup
# of the root, as prism-eval's kube-node scenario has its critical probe.
# Run in the lab guest:
#   ci/lab run -- env PROBE=1 docs/evaluation/stop31/kubelet-tree.sh $PWD/target/release/scx_prism
set -u
R=/sys/fs/cgroup/kt
SCHED="${1:-}"; shift || true; ARGS=("$@")
BIN=$(dirname "$(readlink -f "$0")")/../../../target/release
echo "+cpu" > /sys/fs/cgroup/cgroup.subtree_control
mk() { mkdir -p "$R/$1"; echo "$2" > "$R/$1/cpu.weight"; }
ctl() { echo "+cpu" > "$R/$1/cgroup.subtree_control"; }
mkdir -p $R; echo "+cpu" > $R/cgroup.subtree_control
B=kubepods.slice/kubepods-burstable.slice; E=kubepods.slice/kubepods-besteffort.slice
mk kubepods.slice 79; ctl kubepods.slice; mk $B 63; mk $E 1; ctl $B; ctl $E
for x in "pod100m 4" "pod500m 20" "pod1000m 39"; do
	set -- $x; mk $B/kubepods-$1.slice $2; ctl $B/kubepods-$1.slice; mk $B/kubepods-$1.slice/c.scope $2
done
mk $E/kubepods-podbe.slice 1; ctl $E/kubepods-podbe.slice; mk $E/kubepods-podbe.slice/c.scope 1
mk system.slice 100; ctl system.slice; mk system.slice/hog.service 100
hog() { for _ in $(seq "$2"); do sh -c "echo \$\$ > $R/$1/cgroup.procs; while :; do :; done" & done; }
hog $B/kubepods-pod100m.slice/c.scope 2; hog $B/kubepods-pod500m.slice/c.scope 4
hog $B/kubepods-pod1000m.slice/c.scope 1; hog $E/kubepods-podbe.slice/c.scope 2; hog system.slice/hog.service 1
usage() {
	for g in $B/kubepods-pod100m.slice $B/kubepods-pod500m.slice $B/kubepods-pod1000m.slice $E/kubepods-podbe.slice system.slice; do
		printf "%s " "$(awk '/usage_usec/{print $2}' $R/$g/cpu.stat)"
	done
}
if [ -n "$SCHED" ]; then
	"$SCHED" "${ARGS[@]}" > /tmp/kubelet-tree-sched.out 2>&1 & SP=$!
	for _ in $(seq 100); do [ "$(cat /sys/kernel/sched_ext/state)" = enabled ] && break; sleep 0.2; done
	sleep 2; cat /sys/kernel/sched_ext/root/ops
fi
if [ -n "${PROBE:-}" ]; then
	mkdir -p /sys/fs/cgroup/probe
	(echo $BASHPID > /sys/fs/cgroup/probe/cgroup.procs
	 exec "$BIN/prism-probe" --workers 2 --interval-us 2000 --work-us 300 --duration-s 7 > /tmp/kubelet-tree-probe.json) &
fi
a=$(usage); sleep 6; b=$(usage)
python3 -c "
a=[int(x) for x in '$a'.split()]; b=[int(x) for x in '$b'.split()]
d=[y-x for x,y in zip(a,b)]; t=sum(d)
print('shares pod100m pod500m pod1000m podbe hog:', ' '.join('%.1f'%(100*x/t) for x in d), 'tree CPUs %.2f'%(t/6e6))"
[ -n "$SCHED" ] && { kill -INT $SP; wait $SP; }
kill $(jobs -p) 2>/dev/null; sleep 1
[ -n "${PROBE:-}" ] && cat /tmp/kubelet-tree-probe.json
for d in $(find $R -depth -type d); do rmdir "$d" 2>/dev/null; done
exit 0
