// SPDX-License-Identifier: GPL-2.0-only
/* Syscalls per workload: the example consumer of docs/CONSUMER.md. */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <prism/bus.bpf.h>

char LICENSE[] SEC("license") = "GPL";

/* identity -> syscalls, per CPU */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} syscalls SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(count_syscall, struct pt_regs *regs, long id)
{
	struct prism_task_info *t;
	__u64 one = 1, *n;
	bool fresh;

	t = prism_task_identity(bpf_get_current_task_btf(), &fresh);
	if (!t)
		return 0;
	n = bpf_map_lookup_elem(&syscalls, &t->identity);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&syscalls, &t->identity, &one, BPF_NOEXIST);
	return 0;
}
