/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What prism-net's BPF programs and its user space share. One header,
 * bindgen'd into Rust (bpf_intf.rs): never two copies.
 */
#ifndef __PRISM_NET_INTF_H
#define __PRISM_NET_INTF_H

#ifndef __VMLINUX_H__
typedef unsigned int __u32;
typedef unsigned long long __u64;
#endif

enum net_direction {
	NET_INGRESS = 0,
	NET_EGRESS = 1,
};

/* the deny set is keyed per (identity, direction) */
struct net_key {
	__u32 identity;		/* 0: traffic of no known workload */
	__u32 direction;	/* enum net_direction */
};

struct net_counts {
	__u64 packets;
	__u64 bytes;
};

/*
 * Each identity seen gets a slot; its counters are net_counters[NET_INDEX]:
 * passed and dropped, per direction. Identities past NET_MAX_SLOTS share
 * the overflow counter.
 */
#define NET_MAX_SLOTS		16384
#define NET_PER_SLOT		4
#define NET_INDEX(slot, dropped, dir)	((slot) * NET_PER_SLOT + (dropped) * 2 + (dir))
/* deny rules at most */
#define NET_MAX_DENY		4096
/* ancestors looked at for a cgroup the feeder has not written yet */
#define NET_ANCESTOR_LEVELS	16

#endif /* __PRISM_NET_INTF_H */
