/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What prism-net's BPF programs and its user space share. The Rust side
 * uses the skeleton's generated twins of these types (one definition).
 */
#ifndef __PRISM_NET_INTF_H
#define __PRISM_NET_INTF_H

enum net_direction {
	NET_INGRESS = 0,
	NET_EGRESS = 1,
};

/* counters are kept per (identity, direction) */
struct net_key {
	__u32 identity;		/* 0: traffic of no known workload */
	__u32 direction;	/* enum net_direction */
};

struct net_counts {
	__u64 packets;
	__u64 bytes;
};

/* identities with their own counters; more share the overflow counter */
#define NET_MAX_KEYS		32768
/* deny rules at most */
#define NET_MAX_DENY		4096
/* ancestors looked at for a cgroup the feeder has not written yet */
#define NET_ANCESTOR_LEVELS	16

#endif /* __PRISM_NET_INTF_H */
