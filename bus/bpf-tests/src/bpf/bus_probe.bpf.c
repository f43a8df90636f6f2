// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test consumer of the bus header, loaded by tests/host_bpf_*.rs on a real
 * kernel. observe_sys_enter resolves the identity of watched processes
 * through prism_task_identity() on every syscall they make and reports what
 * it saw. The programs marked "?" (not loaded by default) each try to write
 * the bus; the tests enable one and assert that the verifier refuses it.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <prism/bus.bpf.h>

char LICENSE[] SEC("license") = "GPL";

/* what observe_sys_enter last saw for one watched process */
struct observation {
	__u64 cgroup_id;
	__u64 generation;
	__u32 identity;
	__u32 flags;
	__u32 source;
	__u32 pad;
	__u64 calls;		/* syscalls observed */
	__u64 resolutions;	/* of which re-resolved (cache misses) */
};

/* tgid -> observation; user space inserts a zeroed value to watch a process */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct observation);
} watched SEC(".maps");

/* a direct reference to the pinned map, for the test that reuses the pin */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PRISM_DEFAULT_MAX_ENTRIES);
	__type(key, __u64);
	__type(value, struct prism_identity);
	__uint(map_flags, PRISM_IDENTITY_MAP_FLAGS);
} pinned_identity SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(observe_sys_enter, struct pt_regs *regs, long id)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct prism_task_info *info;
	struct observation *o;
	bool fresh;

	o = bpf_map_lookup_elem(&watched, &tgid);
	if (!o)
		return 0;
	info = prism_task_identity(bpf_get_current_task_btf(), &fresh);
	if (!info)
		return 0;
	o->cgroup_id = info->cgroup_id;
	o->generation = info->generation;
	o->identity = info->identity;
	o->flags = info->flags;
	o->source = info->source;
	__sync_fetch_and_add(&o->calls, 1);
	if (fresh)
		__sync_fetch_and_add(&o->resolutions, 1);
	return 0;
}

SEC("?tp_btf/sys_enter")
int BPF_PROG(write_bus_by_helper, struct pt_regs *regs, long id)
{
	struct prism_identity v = { .identity = 256 };
	__u32 slot = 0;
	__u64 key = 1;
	void *bus;

	bus = bpf_map_lookup_elem(&prism_bus_identity, &slot);
	if (bus)
		bpf_map_update_elem(bus, &key, &v, BPF_ANY);
	return 0;
}

SEC("?tp_btf/sys_enter")
int BPF_PROG(write_bus_by_store, struct pt_regs *regs, long id)
{
	struct prism_identity *v;
	__u32 slot = 0;
	__u64 key = 1;
	void *bus;

	bus = bpf_map_lookup_elem(&prism_bus_identity, &slot);
	if (!bus)
		return 0;
	v = bpf_map_lookup_elem(bus, &key);
	if (v)
		v->flags = PRISM_CLASS_CRITICAL << PRISM_CLASS_SHIFT;
	return 0;
}

SEC("?tp_btf/sys_enter")
int BPF_PROG(write_meta_by_store, struct pt_regs *regs, long id)
{
	struct prism_meta *meta;
	__u32 slot = 0;
	void *m;

	m = bpf_map_lookup_elem(&prism_bus_meta, &slot);
	if (!m)
		return 0;
	meta = bpf_map_lookup_elem(m, &slot);
	if (meta)
		meta->generation = 0;
	return 0;
}

SEC("?tp_btf/sys_enter")
int BPF_PROG(write_pinned_directly, struct pt_regs *regs, long id)
{
	struct prism_identity v = { .identity = 256 };
	__u64 key = 1;

	bpf_map_update_elem(&pinned_identity, &key, &v, BPF_ANY);
	return 0;
}
