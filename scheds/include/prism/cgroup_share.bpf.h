/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cgroup cpu.weight as group shares, hierarchical, the way CFS/EEVDF give
 * them, for Prism's sched_ext schedulers (flattened hierarchical weights).
 *
 * A cgroup's share of the machine is its cpu.weight over the summed weight
 * of its *active* siblings (those with runnable tasks somewhere below,
 * averaged over time: struct prism_avg), times its parent's share, up to
 * the root. Tasks that sit directly in a
 * cgroup with active children count together as one more child of weight
 * PRISM_CG_OWN_WEIGHT (the root's own tasks, kthreads mostly, too).
 * Within its cgroup a task gets its own weight (nice, and what the
 * scheduler adds: bus weight, class) over the summed weight of the
 * cgroup's runnable tasks (averaged too). prism_cg_task_weight() turns that into one
 * weight per task, on the scale of the own weights: the runnable tasks'
 * weights add up to their own weights' sum (prism_cg_total), so with one
 * cgroup, or equal cgroups of equal tasks, every task keeps its own weight,
 * and a vruntime scheduler that charges with it gives each cgroup its
 * share whatever its thread count. A cgroup the cpu controller does not cover
 * belongs to its nearest covered ancestor (scx_bpf_task_cgroup's answer).
 *
 * Cost: activity moves up only on a 0 <-> 1 change of a cgroup's active
 * members, as atomic deltas that commute (no lock: a lock holder's vCPU
 * preempted by the host stalls every other CPU), so concurrent changes
 * converge; a weight counted by a change that lost a race is corrected by
 * that cgroup's next change. Cgroups are kept in a hash by cgroup id with
 * their parent's id, so neither the counting nor the walks take a cgroup
 * reference (kfuncs that cost ~5 us each under emulation, measured with
 * kernel.bpf_stats_enabled). A cgroup caches its share and walks its
 * ancestors again (at most PRISM_CG_MAX_DEPTH) when the cache is older than
 * PRISM_CG_SHARE_TTL_NS or its weight changed: a share is a rate over time,
 * and a sibling's wakeup must not make every cgroup's next enqueue walk
 * (a global generation did that: measured as lost latency and throughput).
 *
 * A scheduler calls prism_cg_init/prism_cg_exit/prism_cg_set_weight from
 * its cgroup callbacks, prism_cg_count/prism_cg_uncount from ops.runnable and
 * ops.quiescent (and ops.disable), and prism_cg_task_weight where it needs
 * the task's weight; it embeds a struct prism_cg_task in its task context.
 */
#ifndef __PRISM_CGROUP_SHARE_BPF_H
#define __PRISM_CGROUP_SHARE_BPF_H

#define PRISM_CG_WEIGHT_DFL	100
/* the weight of a cgroup's own tasks beside its active children */
#define PRISM_CG_OWN_WEIGHT	100
/* fixed point of a task's part of the machine (internal) */
#define PRISM_CG_UNIT		(1ULL << 20)
#define PRISM_CG_SHARE_ONE	(1ULL << 32)
#define PRISM_CG_MAX_DEPTH	16
/* how long a cgroup's cached share stands before it is computed again */
#define PRISM_CG_SHARE_TTL_NS	(1000 * 1000)
/* cgroups tracked; one more is left to its tasks' own weights (counted) */
#define PRISM_CG_MAX		65536
/* the window of the runnable-weight averages (struct prism_avg) */
#define PRISM_CG_AVG_NS		(16ULL * 1000 * 1000)
#define PRISM_CG_AVG_SHIFT	16

/*
 * A sum of runnable weight as the weights read it: a moving average over
 * PRISM_CG_AVG_NS of a sum that changes at every wakeup and sleep (fixed
 * point, PRISM_CG_AVG_SHIFT): a cgroup's runnable tasks' own weights, its
 * active children's weights. Read at the instant, a
 * thread that wakes every millisecond for 50 us was in its cgroup's sums
 * whenever its wakeup preempted a sibling, and the sibling, weighed then,
 * was charged as one of three where it was one of two: a cgroup of 2
 * busy threads and that waker got 0.85-0.91 CPU of the lab's 2, 4 busy
 * threads beside it 1.05-1.11 (0.82-0.84 against 1.13 with the waker in a
 * sibling cgroup, a pod's sidecar); EEVDF gives 0.96-1.0 each, and CFS
 * weighs by load averages for the same reason. Averaged: 0.95-0.99 (0.90-
 * 0.93 with the sidecar: its wait for a CPU still counts against its
 * sibling). Updated without a lock at each change: a lost race costs one
 * interval's weighting, never the sum, which stays exact.
 * The machine's sum (prism_cg_total) is read at the instant: it scales
 * every task's weight and the fair clock alike, so the waker's moment
 * costs nobody, and averaged it lagged cpu.max's releases: the clock
 * crawled for 16 ms after hundreds of throttled tasks had left, and an
 * unlimited probe's p50 beside 200 throttled cgroups was 204-229 us in
 * 4 runs of 4 (at the instant: 118-223 us in 9 runs, 6 of them 118-150).
 */
struct prism_avg {
	__s64 avg;
	__u64 at;		/* the last change, scx_bpf_now */
};

struct prism_cg {
	__u64 parent;		/* the parent's cgroup id, 0 for the root */
	__u32 weight;		/* cpu.weight, 1..10000 (0: not told, 100) */
	__s32 nr_active;	/* active children, + 1 while own tasks are runnable */
	__s64 child_wsum;	/* weight of the active children (+ own tasks') */
	struct prism_avg child_wsum_avg;
	__u64 counted;		/* weight it adds to its parent's child_wsum now */
	__s64 nr_runnable;	/* runnable tasks directly in it */
	__s64 task_wsum;	/* their summed own weights */
	struct prism_avg task_wsum_avg;
	__u64 share;		/* cached share of the machine, PRISM_CG_SHARE_ONE = all */
	__u64 share_at;		/* when it was computed (scx_bpf_now) */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, PRISM_CG_MAX);
	__type(key, __u64);
	__type(value, struct prism_cg);
} prism_cgs SEC(".maps");

/* What a task has added to its cgroup's counters (in the task's context). */
struct prism_cg_task {
	__u64 cgid;		/* the cgroup it is counted in, 0: not counted */
	__u64 weight;		/* the own weight it added to task_wsum */
};

/* the summed own weight of the counted (runnable) tasks, at the instant */
volatile __s64 prism_cg_total;
/* statistics (racy counts): share recomputations, activity changes, cgroups not tracked */
volatile __u64 nr_cg_share_walks, nr_cg_activations, nr_cg_untracked;

/*
 * The average @a (fixed point) at @now of a sum that is @cur and has been
 * since its last change. (A global function, as are its two callers: the
 * verifier checks each once, not in every state of every walk that calls
 * it; inlined, 6.12's verifier ran out of its instruction budget.)
 */
__noinline __s64 prism_avg_at(struct prism_avg *a, __s64 cur, __u64 now)
{
	__s64 dt, target = cur << PRISM_CG_AVG_SHIFT;

	if (!a)
		return target;
	dt = (__s64)(now - a->at);
	if (!a->at || dt >= (__s64)PRISM_CG_AVG_NS)
		return target;
	if (dt <= 0)
		return a->avg;
	/* (in microseconds: no overflow below 2^30 of weight) */
	return a->avg + (target - a->avg) * (dt >> 10) / (__s64)(PRISM_CG_AVG_NS >> 10);
}

/* The average of a sum that is @cur now and has been since its last change. */
__noinline __s64 prism_avg_read(struct prism_avg *a, __s64 cur, __u64 now)
{
	return prism_avg_at(a, cur, now) >> PRISM_CG_AVG_SHIFT;
}

/* Before the sum changes: fold its time at @cur into the average. */
__noinline int prism_avg_fold(struct prism_avg *a, __s64 cur, __u64 now)
{
	if (!a)
		return 0;
	a->avg = prism_avg_at(a, cur, now);
	a->at = now;
	return 0;
}

static __always_inline struct prism_cg *prism_cg_lookup(__u64 cgid)
{
	return bpf_map_lookup_elem(&prism_cgs, &cgid);
}

/*
 * The cgroup whose cpu.weight governs @p: its cpu controller's (a cgroup
 * without the controller belongs to its nearest ancestor with it), as
 * scx_bpf_task_cgroup answers, read without taking a reference.
 */
static __always_inline __u64 prism_cg_task_cgid(struct task_struct *p)
{
	struct task_group *tg = p->sched_task_group;

	if (!tg || !tg->css.cgroup)
		return 0;
	return tg->css.cgroup->kn->id;
}

static __always_inline __u64 prism_cg_weight_of(const struct prism_cg *cg)
{
	return cg->weight ?: PRISM_CG_WEIGHT_DFL;
}

/*
 * Apply (@d_active members, @d_wsum weight) to @cg and, as far as its
 * activity or counted weight changes, to its ancestors.
 */
static __always_inline void prism_cg_propagate(struct prism_cg *cg, __s32 d_active, __s64 d_wsum,
					       __u64 now)
{
	__s32 before;
	bool was, active;
	__u64 counted;
	int i;

	bpf_for(i, 0, PRISM_CG_MAX_DEPTH + 1) {
		if (d_wsum) {
			prism_avg_fold(&cg->child_wsum_avg, cg->child_wsum, now);
			__sync_fetch_and_add(&cg->child_wsum, d_wsum);
		}
		before = d_active ? __sync_fetch_and_add(&cg->nr_active, d_active) : cg->nr_active;
		was = before > 0;
		active = before + d_active > 0;
		/* what it adds to its parent: exchanged, so the deltas telescope */
		counted = active ? prism_cg_weight_of(cg) : 0;
		d_wsum = (__s64)counted - (__s64)__sync_lock_test_and_set(&cg->counted, counted);
		d_active = (__s32)active - (__s32)was;
		if ((!d_active && !d_wsum) || !cg->parent)
			break;
		cg = prism_cg_lookup(cg->parent);
		if (!cg)
			break;
	}
}

/* From ops.cgroup_init: track @cgrp under its parent. */
static __always_inline s32 prism_cg_init(struct cgroup *cgrp, __u32 weight)
{
	struct prism_cg cg = { .weight = weight };
	__u64 cgid = cgrp->kn->id;
	struct cgroup *parent;

	if (cgrp->level > 0) {
		parent = bpf_cgroup_ancestor(cgrp, cgrp->level - 1);
		if (parent) {
			cg.parent = parent->kn->id;
			bpf_cgroup_release(parent);
		}
	}
	/* full: its tasks keep their own weights; never refuse a cgroup */
	if (bpf_map_update_elem(&prism_cgs, &cgid, &cg, BPF_ANY))
		nr_cg_untracked++;
	return 0;
}

/* From ops.cgroup_exit: nothing of it stays (it has no tasks left). */
static __always_inline void prism_cg_exit(struct cgroup *cgrp)
{
	__u64 cgid = cgrp->kn->id;

	bpf_map_delete_elem(&prism_cgs, &cgid);
}

/* From ops.cgroup_set_weight: an active cgroup's parent sees the change. */
static __always_inline void prism_cg_set_weight(struct cgroup *cgrp, __u32 weight)
{
	struct prism_cg *cg = prism_cg_lookup(cgrp->kn->id), *parent;
	__s64 d = 0;

	if (!cg)
		return;
	cg->weight = weight;
	cg->share = 0;
	if (cg->nr_active > 0)
		d = (__s64)weight - (__s64)__sync_lock_test_and_set(&cg->counted, weight);
	if (d && cg->parent && (parent = prism_cg_lookup(cg->parent)))
		prism_cg_propagate(parent, 0, d, scx_bpf_now());
}

/* Add @weight to @cg's own runnable tasks; the first makes them a member. */
static __always_inline void prism_cg_add_task(struct prism_cg *cg, __s64 weight, __s64 n)
{
	__u64 now = scx_bpf_now();
	__s64 before;

	prism_avg_fold(&cg->task_wsum_avg, cg->task_wsum, now);
	__sync_fetch_and_add(&cg->task_wsum, weight);
	__sync_fetch_and_add(&prism_cg_total, weight);
	if (!n)
		return;
	before = __sync_fetch_and_add(&cg->nr_runnable, n);
	if (n > 0 && before == 0) {
		nr_cg_activations++;
		prism_cg_propagate(cg, 1, PRISM_CG_OWN_WEIGHT, now);
	} else if (n < 0 && before == 1) {
		prism_cg_propagate(cg, -1, -(__s64)PRISM_CG_OWN_WEIGHT, now);
	}
}

/*
 * Count @ct (own weight @weight) in cgroup @cgid (@cg), unless it is
 * counted already: claimed atomically, as two CPUs may count one task at
 * once (two ops.dispatch releasing it from cpu.max together), and each
 * adding its weight would leave one of them counted forever.
 */
static __always_inline void prism_cg_count_in(struct prism_cg_task *ct, __u64 cgid,
					      struct prism_cg *cg, __u64 weight)
{
	if (__sync_val_compare_and_swap(&ct->cgid, 0, cgid))
		return;
	ct->weight = weight ?: 1;
	prism_cg_add_task(cg, ct->weight, 1);
}

/* From ops.runnable: @p (own weight @weight) now competes in its cgroup. */
static __always_inline void prism_cg_count(struct task_struct *p, struct prism_cg_task *ct,
					   __u64 weight)
{
	__u64 cgid;
	struct prism_cg *cg;

	if (ct->cgid)
		return;
	cgid = prism_cg_task_cgid(p);
	if (cgid && (cg = prism_cg_lookup(cgid)))
		prism_cg_count_in(ct, cgid, cg, weight);
}

/* From ops.quiescent and ops.disable: @p no longer competes. */
static __always_inline void prism_cg_uncount(struct prism_cg_task *ct)
{
	/* (exchanged: of two CPUs uncounting it at once, one does) */
	__u64 cgid = ct->cgid ? __sync_lock_test_and_set(&ct->cgid, 0) : 0;
	struct prism_cg *cg;

	if (!cgid)
		return;
	cg = prism_cg_lookup(cgid);
	if (cg)
		prism_cg_add_task(cg, -(__s64)ct->weight, -1);
}

/*
 * @p, counted in the cgroup it left (a move that ops.quiescent and
 * ops.runnable did not bracket), is counted in @cgid (@cg) now.
 */
static __always_inline void prism_cg_follow(struct prism_cg_task *ct, __u64 cgid,
					    struct prism_cg *cg)
{
	__u64 weight = ct->weight;

	if (!ct->cgid || ct->cgid == cgid)
		return;
	prism_cg_uncount(ct);
	prism_cg_count_in(ct, cgid, cg, weight);
}

/* From ops.cgroup_move: what @p adds moves with it. */
static __always_inline void prism_cg_move(struct prism_cg_task *ct, struct cgroup *to)
{
	__u64 cgid = to->kn->id;
	struct prism_cg *cg = prism_cg_lookup(cgid);

	if (cg)
		prism_cg_follow(ct, cgid, cg);
}

/* The share of the machine of @cg, cached PRISM_CG_SHARE_TTL_NS. */
static __always_inline __u64 prism_cg_share(struct prism_cg *cg, __u64 now)
{
	__u64 share = PRISM_CG_SHARE_ONE, wsum, w;
	struct prism_cg *cur = cg, *parent;
	int i;

	if (cg->share && now - cg->share_at < PRISM_CG_SHARE_TTL_NS)
		return cg->share;
	nr_cg_share_walks++;
	bpf_for(i, 0, PRISM_CG_MAX_DEPTH) {
		if (!cur->parent)
			break;
		parent = prism_cg_lookup(cur->parent);
		if (!parent)
			break;
		w = prism_cg_weight_of(cur);
		/* (averaged: as far as the siblings have been active; at least itself) */
		wsum = prism_avg_read(&parent->child_wsum_avg, parent->child_wsum, now);
		share = share * w / ((__s64)wsum > (__s64)w ? wsum : w);
		cur = parent;
	}
	cg->share = share ?: 1;
	cg->share_at = now;
	return cg->share;
}

/*
 * @p's weight for a vruntime scheduler: its part of its cgroup's share of
 * the machine (its own weight @weight, 100 = a nice-0 task, over its
 * cgroup's runnable tasks', averaged), on the scale of the runnable tasks'
 * own weights (prism_cg_total, the whole machine's). Counted or not
 * (select_cpu runs before ops.runnable), @p is taken as one of its
 * cgroup's runnable tasks.
 */
static __always_inline __u64 prism_cg_task_weight(struct task_struct *p, struct prism_cg_task *ct,
						  __u64 weight)
{
	__u64 share, tsum, w, now, cgid = prism_cg_task_cgid(p);
	struct prism_cg *cg;
	__s64 wsum, total, avg;

	weight = weight ?: 1;
	if (!cgid || !(cg = prism_cg_lookup(cgid)))
		return weight;
	prism_cg_follow(ct, cgid, cg);
	/* a relabel or renice while counted: the cgroup's sum follows */
	if (ct->cgid == cgid && ct->weight != weight) {
		prism_cg_add_task(cg, (__s64)weight - (__s64)ct->weight, 0);
		ct->weight = weight;
	}
	now = scx_bpf_now();
	share = prism_cg_share(cg, now);
	/* (averages count the others as far as they have been runnable) */
	wsum = prism_avg_read(&cg->child_wsum_avg, cg->child_wsum, now);
	avg = prism_avg_read(&cg->task_wsum_avg, cg->task_wsum, now);
	tsum = avg > (__s64)weight ? avg : weight;
	/* its own tasks' part of the cgroup's share, then the task's part of that */
	if (wsum > PRISM_CG_OWN_WEIGHT)
		share = share * PRISM_CG_OWN_WEIGHT / wsum;
	w = share * weight / tsum;
	/* that part of the machine on the own weights' scale */
	total = prism_cg_total;
	if (total < (__s64)weight)
		total = weight;
	w = w / (PRISM_CG_SHARE_ONE / PRISM_CG_UNIT) * total / PRISM_CG_UNIT;
	return w ?: 1;
}

#endif /* __PRISM_CGROUP_SHARE_BPF_H */
