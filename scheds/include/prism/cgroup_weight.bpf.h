/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cgroup cpu.weight for Prism's sched_ext schedulers: kept in cgroup local
 * storage by the ops.cgroup_init / ops.cgroup_set_weight callbacks (which
 * the kernel calls for cgroups with the cpu controller enabled), read per
 * task without a hash lookup. A scheduler's callbacks call the two
 * prism_cgw_* functions; tasks read prism_cgroup_weight().
 */
#ifndef __PRISM_CGROUP_WEIGHT_BPF_H
#define __PRISM_CGROUP_WEIGHT_BPF_H

#define PRISM_CGROUP_WEIGHT_DFL	100

struct prism_cgw {
	__u32 weight;
};

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct prism_cgw);
} prism_cgw_stor SEC(".maps");

/* From ops.cgroup_init. */
static __always_inline s32 prism_cgw_init(struct cgroup *cgrp, __u32 weight)
{
	struct prism_cgw *w;

	w = bpf_cgrp_storage_get(&prism_cgw_stor, cgrp, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!w)
		return -ENOMEM;
	w->weight = weight;
	return 0;
}

/* From ops.cgroup_set_weight. */
static __always_inline void prism_cgw_set(struct cgroup *cgrp, __u32 weight)
{
	struct prism_cgw *w = bpf_cgrp_storage_get(&prism_cgw_stor, cgrp, 0, 0);

	if (w)
		w->weight = weight;
}

/*
 * cpu.weight of @p's cgroup (100 where the cpu controller is off). Only for
 * the task the current operation is about (scx_bpf_task_cgroup's rule).
 */
static __always_inline __u32 prism_cgroup_weight(struct task_struct *p)
{
	struct cgroup *cgrp = scx_bpf_task_cgroup(p);
	struct prism_cgw *w;
	__u32 weight = PRISM_CGROUP_WEIGHT_DFL;

	if (!cgrp)
		return weight;
	w = bpf_cgrp_storage_get(&prism_cgw_stor, cgrp, 0, 0);
	if (w && w->weight)
		weight = w->weight;
	bpf_cgroup_release(cgrp);
	return weight;
}

#endif /* __PRISM_CGROUP_WEIGHT_BPF_H */
