// SPDX-License-Identifier: GPL-2.0-only
/*
 * prism-net: cgroup_skb programs, attached at a cgroup (by default the
 * cgroup v2 root), that count every packet and its bytes under the identity
 * the bus gives the socket's cgroup, per direction, and drop what the deny
 * set names.
 *
 * Counters are per-CPU and added atomically (a softirq can interrupt a
 * program on the same CPU): none is lost, unlike the prototype's `+=` on a
 * shared map. A packet's identity, its counters' slot and its verdict are
 * cached on its socket (socket local storage) with the bus generation and
 * the policy generation they were found under, so a connection's packets
 * cost no hash lookup after the first (an array slot, not a hash, holds the
 * counters); a feeder write, a policy change or a cgroup move re-resolves.
 */
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <prism/bus.bpf.h>
#include "intf.h"

char LICENSE[] SEC("license") = "GPL";

/* identity -> its slot (given on first sight, kept) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NET_MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} net_slots SEC(".maps");

/* [0]: the next slot to give */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} net_next_slot SEC(".maps");

/* per CPU: passed and dropped packets and bytes, at NET_INDEX() */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NET_MAX_SLOTS * NET_PER_SLOT);
	__type(key, __u32);
	__type(value, struct net_counts);
} net_counters SEC(".maps");

/* packets of identities that found no slot left: counted, not lost */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct net_counts);
} net_overflow SEC(".maps");

/* sockets resolved to a workload without the net facet (counted as identity 0) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} net_unfaceted SEC(".maps");

/* the deny set, written by user space: (identity, direction) -> 1 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NET_MAX_DENY);
	__type(key, struct net_key);
	__type(value, __u8);
} net_deny SEC(".maps");

/* [0]: the deny set's generation, bumped by user space after each change */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} net_policy SEC(".maps");

struct sk_identity {
	__u64 bus_generation;
	__u64 policy_generation;
	__u64 cgroup_id;
	__u32 identity;
	__u32 slot;		/* NET_MAX_SLOTS: none left */
	__u32 deny;		/* bit per direction */
	__u32 resolved;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sk_identity);
} net_sk_cache SEC(".maps");

static __always_inline __u64 policy_generation(void)
{
	__u32 zero = 0;
	__u64 *g = bpf_map_lookup_elem(&net_policy, &zero);

	return g ? *g : 0;
}

/* A workload's identity if its entry carries the net facet; else 0, counted. */
static __always_inline __u32 net_identity(const struct prism_identity *v)
{
	__u32 zero = 0;
	__u64 *n;

	if (prism_has_facet(v->flags, PRISM_FACET_NET))
		return prism_id(v->identity);
	n = bpf_map_lookup_elem(&net_unfaceted, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

/*
 * The identity of the packet's cgroup: ONE lookup of its own id (the feeder
 * writes every cgroup of a workload); only a cgroup newer than the feeder's
 * last write falls back to its nearest ancestor with an entry. A workload
 * without the net facet is counted as no workload (identity 0), never denied.
 */
static __always_inline __u32 resolve(struct __sk_buff *skb, __u64 cgroup_id)
{
	const struct prism_identity *v = prism_lookup(cgroup_id);
	const struct prism_identity *nearest = NULL;
	int level;

	if (v)
		return net_identity(v);
	for (level = 1; level <= NET_ANCESTOR_LEVELS; level++) {
		__u64 anc = bpf_skb_ancestor_cgroup_id(skb, level);

		if (!anc || anc == cgroup_id)
			break;
		v = prism_lookup(anc);
		if (v)
			nearest = v;
	}
	return nearest ? net_identity(nearest) : 0;
}

static __always_inline __u32 deny_bits(__u32 identity)
{
	struct net_key k = { .identity = identity };
	__u32 bits = 0;

	k.direction = NET_INGRESS;
	if (bpf_map_lookup_elem(&net_deny, &k))
		bits |= 1 << NET_INGRESS;
	k.direction = NET_EGRESS;
	if (bpf_map_lookup_elem(&net_deny, &k))
		bits |= 1 << NET_EGRESS;
	return bits;
}

/* The slot of an identity's counters, given on first sight. */
static __always_inline __u32 slot_of(__u32 identity)
{
	__u32 zero = 0, *slot, *next, given;

	slot = bpf_map_lookup_elem(&net_slots, &identity);
	if (slot)
		return *slot;
	next = bpf_map_lookup_elem(&net_next_slot, &zero);
	if (!next || *next >= NET_MAX_SLOTS)
		return NET_MAX_SLOTS;
	given = __sync_fetch_and_add(next, 1);
	if (given >= NET_MAX_SLOTS)
		return NET_MAX_SLOTS;
	/* Another CPU may have given it one first: theirs stands. */
	if (bpf_map_update_elem(&net_slots, &identity, &given, BPF_NOEXIST)) {
		slot = bpf_map_lookup_elem(&net_slots, &identity);
		return slot ? *slot : NET_MAX_SLOTS;
	}
	return given;
}

static __always_inline void add(__u32 slot, __u32 dropped, __u32 direction, __u32 len)
{
	struct net_counts *c;
	__u32 index = NET_INDEX(slot, dropped, direction), zero = 0;

	if (slot < NET_MAX_SLOTS)
		c = bpf_map_lookup_elem(&net_counters, &index);
	else
		c = bpf_map_lookup_elem(&net_overflow, &zero);
	if (!c)
		return;
	__sync_fetch_and_add(&c->packets, 1);
	__sync_fetch_and_add(&c->bytes, len);
}

static __always_inline int account(struct __sk_buff *skb, __u32 direction)
{
	__u64 cgroup_id = bpf_skb_cgroup_id(skb);
	__u64 bus_gen = prism_generation();
	__u64 policy_gen = policy_generation();
	struct sk_identity *cached = NULL;
	struct bpf_sock *sk = skb->sk;
	__u32 identity, slot, deny;

	if (sk)
		sk = bpf_sk_fullsock(sk);
	if (sk)
		cached = bpf_sk_storage_get(&net_sk_cache, sk, NULL,
					    BPF_SK_STORAGE_GET_F_CREATE);
	if (cached && cached->resolved && cached->cgroup_id == cgroup_id &&
	    cached->bus_generation == bus_gen &&
	    cached->policy_generation == policy_gen) {
		slot = cached->slot;
		deny = cached->deny;
	} else {
		identity = resolve(skb, cgroup_id);
		slot = slot_of(identity);
		deny = deny_bits(identity);
		if (cached) {
			cached->identity = identity;
			cached->slot = slot;
			cached->deny = deny;
			cached->cgroup_id = cgroup_id;
			cached->bus_generation = bus_gen;
			cached->policy_generation = policy_gen;
			cached->resolved = 1;
		}
	}
	if (deny & (1 << direction)) {
		add(slot, 1, direction, skb->len);
		return 0;
	}
	add(slot, 0, direction, skb->len);
	return 1;
}

/* Packets arriving for a socket of a cgroup at or below the attach point. */
SEC("cgroup_skb/ingress")
int prism_net_ingress(struct __sk_buff *skb)
{
	return account(skb, NET_INGRESS);
}

/* Packets leaving from a socket of a cgroup at or below the attach point. */
SEC("cgroup_skb/egress")
int prism_net_egress(struct __sk_buff *skb)
{
	return account(skb, NET_EGRESS);
}
