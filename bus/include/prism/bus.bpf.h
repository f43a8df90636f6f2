/* SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0-only) */
/*
 * Prism identity bus, ABI v1: the C half of its two sources of truth.
 *
 * The Rust half is bus/src/abi.rs; bus/tests/abi_agreement.rs compiles this
 * header and asserts that both agree. Change both or neither.
 *
 * Two parts:
 *  - the ABI (constants, value layouts), plain C, usable from any C program
 *    when PRISM_BUS_ABI_ONLY is defined;
 *  - the read-only helpers every BPF consumer shares: lookup by cgroup id,
 *    resolving a task (its own cgroup first, a bounded ancestor walk as the
 *    fallback) and a per-task cache keyed by prism_meta.generation. A BPF
 *    program includes vmlinux.h, bpf_helpers.h and bpf_core_read.h first.
 *
 * Consumers never reference the pinned maps directly: they declare two
 * one-slot map-in-map tables (prism_bus_identity, prism_bus_meta) that user
 * space fills with the pinned maps (prism_bus::consumer). A consumer started
 * before the feeder therefore loads with empty slots ("no identities yet")
 * and picks the bus up, without reloading, when it appears. The inner maps
 * keep BPF_F_RDONLY_PROG, so the verifier refuses any write through them.
 */
#ifndef __PRISM_BUS_BPF_H
#define __PRISM_BUS_BPF_H

#ifdef PRISM_BUS_ABI_ONLY
#include <linux/types.h>
#endif

#define PRISM_ABI_VERSION		1

#define PRISM_PIN_DIR			"/sys/fs/bpf/prism"
#define PRISM_IDENTITY_MAP_NAME		"prism_identity"
#define PRISM_META_MAP_NAME		"prism_meta"
#define PRISM_DEFAULT_MAX_ENTRIES	(1U << 20)

/* uapi values, spelled out so the ABI part needs no kernel header */
#define PRISM_BPF_F_NO_PREALLOC		(1U << 0)
#define PRISM_BPF_F_RDONLY_PROG		(1U << 7)
#define PRISM_IDENTITY_MAP_FLAGS	(PRISM_BPF_F_RDONLY_PROG | PRISM_BPF_F_NO_PREALLOC)
#define PRISM_META_MAP_FLAGS		PRISM_BPF_F_RDONLY_PROG

/* identities: 24-bit; below 256 reserved */
#define PRISM_IDENTITY_MASK		0x00FFFFFFU
#define PRISM_MIN_DYNAMIC_IDENTITY	256U
#define PRISM_ID_UNKNOWN		0U
#define PRISM_ID_HOST			1U
#define PRISM_ID_WORLD			2U
#define PRISM_ID_UNMANAGED		3U
#define PRISM_ID_HEALTH			4U
#define PRISM_ID_INIT			5U
#define PRISM_ID_REMOTE_NODE		6U
#define PRISM_ID_KUBE_APISERVER		7U
#define PRISM_ID_INGRESS		8U

/* flags, bits 0..2: facets, stamped by the feeder from its config */
#define PRISM_FACET_NET			0x1U
#define PRISM_FACET_SCHED		0x2U
#define PRISM_FACET_OBSERVE		0x4U
#define PRISM_FACET_MASK		(PRISM_FACET_NET | PRISM_FACET_SCHED | PRISM_FACET_OBSERVE)

/* flags, bits 8..10: latency class */
#define PRISM_CLASS_SHIFT		8
#define PRISM_CLASS_MASK		(0x7U << PRISM_CLASS_SHIFT)
#define PRISM_CLASS_UNSET		0U
#define PRISM_CLASS_CRITICAL		1U
#define PRISM_CLASS_NORMAL		2U
#define PRISM_CLASS_BATCH		3U

/* flags, bits 11..17: weight, 0 unset, 1..127, 64 neutral */
#define PRISM_WEIGHT_SHIFT		11
#define PRISM_WEIGHT_MASK		(0x7FU << PRISM_WEIGHT_SHIFT)
#define PRISM_WEIGHT_MAX		127U
#define PRISM_WEIGHT_NEUTRAL		64U

/* every other bit of flags is zero in v1 */
#define PRISM_FLAGS_DEFINED_MASK	(PRISM_FACET_MASK | PRISM_CLASS_MASK | PRISM_WEIGHT_MASK)

/* value of prism_identity, keyed by a __u64 cgroup v2 id; little-endian */
struct prism_identity {
	__u32 identity;		/* low 24 bits */
	__u32 flags;
	__u64 label_hash;	/* FNV-1a/64 of the canonical string */
	__u64 updated_ns;	/* CLOCK_REALTIME of the feeder's write */
};

/* the single value of prism_meta (key 0) */
struct prism_meta {
	__u32 abi_version;
	__u32 reserved;
	__u64 generation;	/* bumped after every batch of writes */
	__u64 entries;
};

_Static_assert(sizeof(struct prism_identity) == 24, "prism_identity is 24 bytes");
_Static_assert(sizeof(struct prism_meta) == 24, "prism_meta is 24 bytes");
_Static_assert((PRISM_FACET_MASK & PRISM_CLASS_MASK) == 0, "facets and class overlap");
_Static_assert((PRISM_FACET_MASK & PRISM_WEIGHT_MASK) == 0, "facets and weight overlap");
_Static_assert((PRISM_CLASS_MASK & PRISM_WEIGHT_MASK) == 0, "class and weight overlap");

/* ancestors tried after a task's own cgroup misses (prismctl lookup too) */
#ifndef PRISM_ANCESTOR_WALK_MAX
#define PRISM_ANCESTOR_WALK_MAX		8
#endif

#ifndef PRISM_BUS_ABI_ONLY

/* how a task's identity was found */
enum prism_source {
	PRISM_SRC_MISS = 0,	/* no entry: unknown workload, or no bus yet */
	PRISM_SRC_OWN = 1,	/* the task's own cgroup has an entry */
	PRISM_SRC_ANCESTOR = 2,	/* an ancestor's entry (cgroup newer than the last write) */
};

/*
 * Templates of the pinned maps, given by size rather than type: a struct a
 * program only reaches through pointers is a mere forward declaration in
 * its BTF, which libbpf cannot size (and the pinned maps carry no BTF).
 */
struct prism_identity_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PRISM_DEFAULT_MAX_ENTRIES);
	__uint(key_size, sizeof(__u64));
	__uint(value_size, sizeof(struct prism_identity));
	__uint(map_flags, PRISM_IDENTITY_MAP_FLAGS);
};

struct prism_meta_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct prism_meta));
	__uint(map_flags, PRISM_META_MAP_FLAGS);
};

/* slot 0 holds the pinned prism_identity, filled by user space */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct prism_identity_inner);
} prism_bus_identity SEC(".maps");

/* slot 0 holds the pinned prism_meta, filled by user space */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct prism_meta_inner);
} prism_bus_meta SEC(".maps");

/* what a consumer keeps per task, so steady state costs no hash lookup */
struct prism_task_info {
	__u64 generation;	/* prism_meta.generation when resolved */
	__u64 cgroup_id;	/* the task's cgroup when resolved */
	__u32 identity;
	__u32 flags;
	__u32 source;		/* enum prism_source */
	__u32 resolved;		/* 0 until the first resolution */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct prism_task_info);
} prism_task_cache SEC(".maps");

static __always_inline __u32 prism_id(__u32 raw_identity)
{
	return raw_identity & PRISM_IDENTITY_MASK;
}

static __always_inline int prism_id_is_reserved(__u32 id)
{
	return id < PRISM_MIN_DYNAMIC_IDENTITY;
}

static __always_inline __u32 prism_class(__u32 flags)
{
	return (flags & PRISM_CLASS_MASK) >> PRISM_CLASS_SHIFT;
}

static __always_inline __u32 prism_weight(__u32 flags)
{
	return (flags & PRISM_WEIGHT_MASK) >> PRISM_WEIGHT_SHIFT;
}

static __always_inline int prism_has_facet(__u32 flags, __u32 facet)
{
	return (flags & facet) == facet;
}

/* The bus's entry for one cgroup id, or NULL (no entry, or no bus yet). */
static __always_inline const struct prism_identity *prism_lookup(__u64 cgroup_id)
{
	__u32 slot = 0;
	void *bus = bpf_map_lookup_elem(&prism_bus_identity, &slot);

	if (!bus)
		return NULL;
	return bpf_map_lookup_elem(bus, &cgroup_id);
}

/* The feeder's generation, 0 while no bus is attached. */
static __always_inline __u64 prism_generation(void)
{
	__u32 slot = 0;
	void *meta_map = bpf_map_lookup_elem(&prism_bus_meta, &slot);
	struct prism_meta *meta;

	if (!meta_map)
		return 0;
	meta = bpf_map_lookup_elem(meta_map, &slot);
	return meta ? meta->generation : 0;
}

static __always_inline __u64 prism_task_cgroup_id(struct task_struct *p)
{
	return BPF_CORE_READ(p, cgroups, dfl_cgrp, kn, id);
}

/*
 * Resolve a task without the cache: ONE lookup of its own cgroup id (the
 * feeder keys every descendant cgroup of a workload), then, only for a
 * cgroup created since the feeder's last write, the nearest ancestor that
 * has an entry, at most PRISM_ANCESTOR_WALK_MAX levels up.
 */
static __always_inline enum prism_source
prism_resolve_task(struct task_struct *p, __u64 *cgroup_id, struct prism_identity *out)
{
	struct cgroup *cgrp = BPF_CORE_READ(p, cgroups, dfl_cgrp);
	const struct prism_identity *v;
	int level, i;

	*cgroup_id = BPF_CORE_READ(cgrp, kn, id);
	v = prism_lookup(*cgroup_id);
	if (v) {
		*out = *v;
		return PRISM_SRC_OWN;
	}

	level = BPF_CORE_READ(cgrp, level);
	for (i = 1; i <= PRISM_ANCESTOR_WALK_MAX; i++) {
		struct cgroup *anc;
		int anc_level = level - i;

		if (anc_level < 0)
			break;
		anc = BPF_CORE_READ(cgrp, ancestors[anc_level]);
		if (!anc)
			break;
		v = prism_lookup(BPF_CORE_READ(anc, kn, id));
		if (v) {
			*out = *v;
			return PRISM_SRC_ANCESTOR;
		}
	}
	return PRISM_SRC_MISS;
}

/*
 * A task's identity through the per-task cache. The cached answer stands
 * while prism_meta.generation and the task's cgroup are unchanged, so a
 * steady-state call costs two array lookups and no hash lookup; a feeder
 * write (which bumps the generation) or a cgroup move takes effect on the
 * next call. Returns the cache entry (NULL only if task storage could not
 * be allocated); *fresh tells whether this call re-resolved.
 */
static __always_inline struct prism_task_info *
prism_task_identity(struct task_struct *p, bool *fresh)
{
	struct prism_task_info *info;
	struct prism_identity v = {};
	__u64 generation, cgroup_id;

	*fresh = false;
	info = bpf_task_storage_get(&prism_task_cache, p, NULL,
				    BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!info)
		return NULL;

	generation = prism_generation();
	cgroup_id = prism_task_cgroup_id(p);
	if (info->resolved && info->generation == generation &&
	    info->cgroup_id == cgroup_id)
		return info;

	info->source = prism_resolve_task(p, &cgroup_id, &v);
	info->identity = prism_id(v.identity);
	info->flags = v.flags;
	info->generation = generation;
	info->cgroup_id = cgroup_id;
	info->resolved = 1;
	*fresh = true;
	return info;
}

#endif /* !PRISM_BUS_ABI_ONLY */
#endif /* __PRISM_BUS_BPF_H */
