/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What prism-trace's BPF program and its user space share: the event record.
 * One header, bindgen'd into Rust (bpf_intf.rs): never two copies.
 */
#ifndef __PRISM_TRACE_INTF_H
#define __PRISM_TRACE_INTF_H

#ifndef __VMLINUX_H__
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
#endif

enum prism_trace_kind {
	TRACE_EXEC = 1,
	TRACE_EXIT = 2,
};

#define TRACE_COMM_LEN		16
#define TRACE_FILENAME_LEN	256

struct prism_trace_event {
	__u64 time_ns;		/* CLOCK_BOOTTIME */
	__u64 cgroup_id;
	__u32 kind;		/* enum prism_trace_kind */
	__u32 pid;		/* the process (thread group) */
	__u32 ppid;
	__u32 identity;		/* 0: no known workload */
	__u32 flags;		/* the bus entry's flags: class, weight, facets */
	__s32 exit_code;	/* exit: the status as wait(2) reports it */
	char comm[TRACE_COMM_LEN];
	char filename[TRACE_FILENAME_LEN];	/* exec: the file executed */
};

#endif /* __PRISM_TRACE_INTF_H */
