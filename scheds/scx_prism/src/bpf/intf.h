/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The interface between scx_prism's BPF side and its Rust policy loop: the
 * records that travel through the two ring buffers and the shared constants.
 * One header, bindgen'd into Rust (bpf_intf.rs): never two copies.
 */
#ifndef __SCX_PRISM_INTF_H
#define __SCX_PRISM_INTF_H

#ifndef __VMLINUX_H__
typedef unsigned char u8;
typedef unsigned int u32;
typedef int s32;
typedef unsigned long long u64;
#endif

#define MAX_CPUS		1024
#define TASK_COMM_LEN_PRISM	16

enum {
	/* dispatched_task.cpu: no CPU preference, first CPU available */
	PRISM_CPU_ANY = 1 << 20,
	/* per-class arrays: indexed by the bus's class value (PRISM_NR_CLASSES) */
	PRISM_CLASS_SLOTS = 4,
};

/* queued_task.bus_source: how the BPF side found the task's identity */
enum {
	BUS_MISS = 0,
	BUS_OWN = 1,
	BUS_ANCESTOR = 2,
};

/* A task that needs a decision, sent by BPF to user space. */
struct queued_task {
	s32 pid;
	s32 cpu;		/* CPU it last ran on */
	u64 nr_cpus_allowed;
	u64 flags;		/* enqueue flags */
	u64 start_ts;		/* when it last started running */
	u64 stop_ts;		/* when it last stopped running */
	u64 exec_runtime;	/* CPU time since it last slept */
	u64 vruntime;		/* as the policy loop last set it; 0 for a new task */
	u64 enq_cnt;		/* generation of this enqueue */
	u64 last_wait_ns;	/* how long it waited to run, last time */
	u64 cgroup_id;
	u32 nice_weight;	/* 1..10000, 100 = nice 0 */
	u32 cgroup_weight;	/* cpu.weight, 1..10000, 100 default */
	u32 identity;		/* from the bus, 0 = unknown */
	u32 class;		/* the bus's PRISM_CLASS_* */
	u32 bus_weight;		/* 0 unset, 1..127, 64 neutral */
	u32 bus_source;		/* BUS_* */
	u32 last_wait_class;	/* its class when it waited last_wait_ns */
	u32 woke;		/* 1 if it is waking up (it slept), 0 if it stayed runnable */
	char comm[TASK_COMM_LEN_PRISM];
};

/* A decision, sent by user space to BPF. */
struct dispatched_task {
	s32 pid;
	s32 cpu;		/* target CPU, or PRISM_CPU_ANY */
	u64 flags;		/* enqueue flags, passed through */
	u64 slice_ns;
	u64 dsq_vtime;		/* order among dispatched tasks */
	u64 vruntime;		/* the task's new vruntime, stored by BPF */
	u64 enq_cnt;		/* must match the task's, else the answer is stale */
};

#endif /* __SCX_PRISM_INTF_H */
