// SPDX-License-Identifier: GPL-2.0-only
/*
 * prism-trace: on every exec and every process exit (tracepoints), the
 * task's identity, class and cgroup from the bus (through the header's
 * per-task cache: one resolution per task and bus generation), its pid,
 * parent, comm and the file executed, sent to user space through a ring
 * buffer. Workloads whose bus entry lacks the observe facet are not
 * reported (only counted). The filters run here, before anything is copied; an event that
 * finds the ring buffer full is counted as dropped, never lost silently.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <prism/bus.bpf.h>
#include "intf.h"

char LICENSE[] SEC("license") = "GPL";

/* filters, set by user space before load */
const volatile bool filter_identities = false;	/* only those in wanted_identities */
const volatile __u32 wanted_classes = 0;	/* bit per class; 0: every class */
const volatile __u64 wanted_cgroup = 0;		/* only at or below it; 0: anywhere */
const volatile __u32 wanted_cgroup_level = 0;
/* pending bytes that wake the reader at once (an eighth of the buffer) */
const volatile __u64 wake_at = 1 << 17;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} wanted_identities SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);	/* user space may resize before load */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dropped SEC(".maps");

/* events of workloads whose entry lacks the observe facet: not reported */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} unfaceted SEC(".maps");

static __always_inline bool in_wanted_cgroup(struct task_struct *p)
{
	struct cgroup *cgrp;

	if (!wanted_cgroup)
		return true;
	cgrp = BPF_CORE_READ(p, cgroups, dfl_cgrp);
	if (BPF_CORE_READ(cgrp, level) < wanted_cgroup_level)
		return false;
	return BPF_CORE_READ(cgrp, ancestors[wanted_cgroup_level], kn, id) == wanted_cgroup;
}

static __always_inline bool wanted(__u32 identity, __u32 flags)
{
	if (filter_identities && !bpf_map_lookup_elem(&wanted_identities, &identity))
		return false;
	if (wanted_classes && !(wanted_classes & (1U << prism_class(flags))))
		return false;
	return true;
}

static __always_inline int emit(struct task_struct *p, __u32 kind, struct linux_binprm *bprm)
{
	struct prism_task_info *info;
	struct prism_trace_event *e;
	__u32 identity = 0, flags = 0;
	bool fresh;

	if (!in_wanted_cgroup(p))
		return 0;
	info = prism_task_identity(p, &fresh);
	if (info) {
		identity = info->identity;
		flags = info->flags;
	}
	if (identity && !prism_has_facet(flags, PRISM_FACET_OBSERVE)) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&unfaceted, &zero);

		if (n)
			__sync_fetch_and_add(n, 1);
		return 0;
	}
	if (!wanted(identity, flags))
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&dropped, &zero);

		if (n)
			__sync_fetch_and_add(n, 1);
		return 0;
	}
	e->time_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = BPF_CORE_READ(p, cgroups, dfl_cgrp, kn, id);
	e->kind = kind;
	e->pid = BPF_CORE_READ(p, tgid);
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->identity = identity;
	e->flags = flags;
	e->exit_code = kind == TRACE_EXIT ? BPF_CORE_READ(p, exit_code) : 0;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), p->comm);
	e->filename[0] = 0;
	if (bprm)
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename),
					  BPF_CORE_READ(bprm, filename));
	/*
	 * Waking the reader costs an event ~2 us; it polls every 100 ms anyway,
	 * so it is woken only once the buffer is filling up.
	 */
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wake_at ?
				      BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	return 0;
}

/* A process replaced its image: comm and cgroup are already the new ones. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(trace_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return emit(p, TRACE_EXEC, bprm);
}

/* A thread exits; only the thread group leader's exit is the process's. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(trace_exit, struct task_struct *p)
{
	if (BPF_CORE_READ(p, pid) != BPF_CORE_READ(p, tgid))
		return 0;
	return emit(p, TRACE_EXIT, NULL);
}
