/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What prism-lsm's BPF program and its user space share: the rule key, the
 * modes and the denial record. One header, bindgen'd into Rust
 * (bpf_intf.rs): never two copies.
 */
#ifndef __PRISM_LSM_INTF_H
#define __PRISM_LSM_INTF_H

#ifndef __VMLINUX_H__
typedef unsigned int __u32;
typedef unsigned long long __u64;
#endif

#define LSM_PATH_LEN	256	/* with its NUL: longer paths are never listed */
#define LSM_COMM_LEN	16

/* how an identity's list is read */
enum prism_lsm_mode {
	LSM_MODE_ALLOW_LISTED = 1,	/* only the listed files may be executed */
	LSM_MODE_DENY_LISTED = 2,	/* the listed files may not be executed */
};

/*
 * One listed file of one identity. The mode is part of the key, so a list
 * switching modes is written beside the old one and the mode flipped after:
 * no exec ever sees half of a list.
 */
struct prism_lsm_rule_key {
	__u32 identity;
	__u32 mode;			/* enum prism_lsm_mode */
	char path[LSM_PATH_LEN];	/* NUL-padded, as d_path names the file */
};

/* the cgroups kept of where a task last exec'd: its own, then its ancestors */
#define LSM_ORIGIN_LEVELS	9

/* where a task last exec'd: its execs are gated only if that is its workload */
struct prism_lsm_origin {
	__u64 cgroups[LSM_ORIGIN_LEVELS];
	__u32 levels;		/* how many of cgroups[] hold ids; 0: none yet */
	__u32 pad;
};

struct prism_lsm_denial {
	__u64 time_ns;		/* CLOCK_BOOTTIME */
	__u64 cgroup_id;
	__u64 denials;		/* the identity's denials so far, this one included */
	__u32 pid;		/* the process (thread group) */
	__u32 ppid;
	__u32 identity;
	__u32 mode;		/* enum prism_lsm_mode */
	char comm[LSM_COMM_LEN];
	char path[LSM_PATH_LEN];
};

#endif /* __PRISM_LSM_INTF_H */
