// SPDX-License-Identifier: GPL-2.0-only
/*
 * prism-lsm: an exec gate per identity. Each identity with a rule has a
 * mode (allow-listed or deny-listed) and a set of files, named as the
 * kernel's d_path names them in the exec'ing task's root; an exec that the
 * list refuses fails with EPERM, is counted for the identity and reported
 * through a ring buffer.
 *
 * What is never gated: a process's first exec into a workload. Each task
 * remembers where it last exec'd (its origin: the cgroup and its
 * ancestors, inherited through fork), and an exec is gated only if the
 * origin belongs to the same identity as the task does now. A container's
 * entrypoint is exec'd by the runtime's init process, which was exec'd on
 * the host and then moved into the container's cgroup: its origin is not
 * the workload's, so the entrypoint, and anything the runtime runs into
 * the workload the same way (an operator's `kubectl exec`), always runs.
 * Everything the entrypoint then starts is gated, wherever in its
 * workload's cgroups it moves.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <prism/bus.bpf.h>
#include "intf.h"

#define EPERM 1

char LICENSE[] SEC("license") = "GPL";

/* only workloads whose bus entry carries these facets are gated */
const volatile __u32 required_facets = PRISM_FACET_OBSERVE;

/* identity -> enum prism_lsm_mode; no entry: not gated */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} modes SEC(".maps");

/* the listed files, per identity and mode */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct prism_lsm_rule_key);
	__type(value, __u8);
} rules SEC(".maps");

/* identity -> denials since load */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} denials SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct prism_lsm_origin);
} origins SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} events SEC(".maps");

/* denials that found the ring buffer full (still denied, still counted) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dropped SEC(".maps");

/* The identity of the workload where the task last exec'd; 0: none. */
static __always_inline __u32 origin_identity(struct prism_lsm_origin *o)
{
	const struct prism_identity *v;
	int i;

	for (i = 0; i < LSM_ORIGIN_LEVELS; i++) {
		if (i >= o->levels)
			break;
		v = prism_lookup(o->cgroups[i]);
		if (v)
			return prism_id(v->identity);
	}
	return 0;
}

static __always_inline __u64 count_denial(__u32 identity)
{
	__u64 zero = 0, *n;

	n = bpf_map_lookup_elem(&denials, &identity);
	if (!n) {
		bpf_map_update_elem(&denials, &identity, &zero, BPF_NOEXIST);
		n = bpf_map_lookup_elem(&denials, &identity);
		if (!n)
			return 0;
	}
	__sync_fetch_and_add(n, 1);
	return *n;
}

static __always_inline void report(struct task_struct *p, struct prism_lsm_rule_key *key,
				   __u64 total)
{
	struct prism_lsm_denial *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&dropped, &zero);

		if (n)
			__sync_fetch_and_add(n, 1);
		return;
	}
	e->time_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = prism_task_cgroup_id(p);
	e->denials = total;
	e->pid = BPF_CORE_READ(p, tgid);
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->identity = key->identity;
	e->mode = key->mode;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), p->comm);
	__builtin_memcpy(e->path, key->path, sizeof(e->path));
	bpf_ringbuf_submit(e, 0);
}

/*
 * A new task (process or thread) starts with its parent's origin, so a
 * workload's descendants stay gated however they were forked.
 */
SEC("lsm/task_alloc")
int BPF_PROG(inherit_origin, struct task_struct *task, unsigned long clone_flags)
{
	struct prism_lsm_origin *parent, *child;

	parent = bpf_task_storage_get(&origins, bpf_get_current_task_btf(), NULL, 0);
	if (!parent || !parent->levels)
		return 0;
	child = bpf_task_storage_get(&origins, task, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (child)
		*child = *parent;
	return 0;
}

/*
 * An exec went through: where it happened is the process's origin from now
 * on (the exec that made a container's entrypoint makes its workload the
 * origin of everything the entrypoint starts). The ancestors are kept too,
 * for a cgroup the feeder has not written yet.
 */
SEC("lsm/bprm_committed_creds")
int BPF_PROG(record_origin, struct linux_binprm *bprm)
{
	struct task_struct *p = bpf_get_current_task_btf();
	struct cgroup *cgrp = BPF_CORE_READ(p, cgroups, dfl_cgrp);
	struct prism_lsm_origin *o;
	int level, i;

	o = bpf_task_storage_get(&origins, p, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!o)
		return 0;
	level = BPF_CORE_READ(cgrp, level);
	o->levels = 0;
	for (i = 0; i < LSM_ORIGIN_LEVELS; i++) {
		struct cgroup *anc;

		if (level - i < 0)
			break;
		anc = BPF_CORE_READ(cgrp, ancestors[level - i]);
		if (!anc)
			break;
		o->cgroups[i] = BPF_CORE_READ(anc, kn, id);
		o->levels = i + 1;
	}
	return 0;
}

/*
 * The gate, before the exec's point of no return (sleepable: d_path names
 * the file as the task sees it). Runs once per file of the exec: a script
 * and then its interpreter. Fails closed for an allow-listed identity:
 * a file whose name does not fit the key cannot be on its list.
 */
_Static_assert((LSM_PATH_LEN & (LSM_PATH_LEN - 1)) == 0, "the padding loop masks its index");

SEC("lsm.s/bprm_check_security")
int BPF_PROG(gate_exec, struct linux_binprm *bprm, int ret)
{
	struct task_struct *p = bpf_get_current_task_btf();
	struct prism_lsm_rule_key key = {};
	struct prism_task_info *info;
	struct prism_lsm_origin *o;
	__u32 *mode;
	bool fresh, listed;
	long len;
	int i;

	if (ret)
		return ret;
	o = bpf_task_storage_get(&origins, p, NULL, 0);
	if (!o)
		return 0;	/* started before prism-lsm */
	info = prism_task_identity(p, &fresh);
	if (!info || !info->identity || !prism_has_facet(info->flags, required_facets))
		return 0;
	if (origin_identity(o) != info->identity)
		return 0;	/* the first exec into this workload */
	mode = bpf_map_lookup_elem(&modes, &info->identity);
	if (!mode)
		return 0;
	key.identity = info->identity;
	key.mode = *mode;
	len = bpf_d_path(&bprm->file->f_path, key.path, sizeof(key.path));
	if (len > 0 && len <= LSM_PATH_LEN) {
		/* d_path leaves bytes of its work after the NUL: the key is NUL-padded */
		for (i = len; i < LSM_PATH_LEN; i++) {
			asm volatile("" : "+r"(i));	/* a loop, not a memset BPF lacks */
			/* the mask is the bound older verifiers (6.12) can see */
			key.path[i & (LSM_PATH_LEN - 1)] = 0;
		}
		listed = bpf_map_lookup_elem(&rules, &key) != NULL;
	} else {
		listed = false;	/* too long to be listed; reported by the name exec was given */
		bpf_probe_read_kernel_str(key.path, sizeof(key.path), BPF_CORE_READ(bprm, filename));
	}
	if (listed == (key.mode == LSM_MODE_ALLOW_LISTED))
		return 0;
	report(p, &key, count_denial(key.identity));
	return -EPERM;
}
