/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * How Prism's schedulers read the bus: the per-task cache of
 * prism/bus.bpf.h, with counters of how each resolution was answered (read
 * by user space from .bss: nr_bus_cached, nr_bus_own, nr_bus_ancestor,
 * nr_bus_miss, nr_bus_no_sched_facet) and the class and weight as a
 * scheduler may use them: only from entries with the sched facet.
 */
#ifndef __PRISM_BUS_RESOLVE_BPF_H
#define __PRISM_BUS_RESOLVE_BPF_H

volatile __u64 nr_bus_cached, nr_bus_own, nr_bus_ancestor, nr_bus_miss, nr_bus_no_sched_facet;

/* The task's cache entry, resolved if stale, counted; NULL if out of memory. */
static __always_inline struct prism_task_info *prism_resolve_counted(struct task_struct *p)
{
	struct prism_task_info *info;
	bool fresh;

	info = prism_task_identity(p, &fresh);
	if (!info)
		return NULL;
	if (!fresh)
		__sync_fetch_and_add(&nr_bus_cached, 1);
	else if (info->source == PRISM_SRC_OWN)
		__sync_fetch_and_add(&nr_bus_own, 1);
	else if (info->source == PRISM_SRC_ANCESTOR)
		__sync_fetch_and_add(&nr_bus_ancestor, 1);
	else
		__sync_fetch_and_add(&nr_bus_miss, 1);
	if (fresh && info->source != PRISM_SRC_MISS && !prism_has_facet(info->flags, PRISM_FACET_SCHED))
		__sync_fetch_and_add(&nr_bus_no_sched_facet, 1);
	return info;
}

/*
 * The entry's flags as a scheduler may act on them: a workload whose entry
 * lacks the sched facet keeps its identity but gets no class or weight.
 */
static __always_inline __u32 prism_sched_flags(const struct prism_task_info *info)
{
	return prism_has_facet(info->flags, PRISM_FACET_SCHED) ? info->flags : 0;
}

/* The class in @flags; 4..7 are reserved by the ABI: an unknown class is none. */
static __always_inline __u32 prism_known_class(__u32 flags)
{
	__u32 class = prism_class(flags);

	return class <= PRISM_CLASS_BATCH ? class : PRISM_CLASS_UNSET;
}

#endif /* __PRISM_BUS_RESOLVE_BPF_H */
