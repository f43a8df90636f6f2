/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The fair deadline both Prism schedulers order a class's tasks by (the
 * scx_bpfland idea, on cgroup group shares).
 *
 * Each task has a virtual runtime: its CPU time scaled by its weight (its
 * part of its cgroup's share, prism/cgroup_share.bpf.h), always charged,
 * never reset. Its deadline is its vruntime plus the weighted CPU time it
 * used since it last woke, so short bursts come before long ones. A task
 * waking from sleep keeps a bounded credit against the fair clock (the lag),
 * up to twice as much when it wakes often (voluntary context switches): interactive
 * work gets early deadlines, CPU hogs late ones; and any task owes at most a
 * bounded debt, so a very light one is not left seconds behind.
 *
 * The fair clock (prism_vtime_now) is how far the vruntime of a task of
 * weight 100 would have advanced under fair sharing: each ns of CPU anybody
 * uses moves it by 100 / the runnable tasks' summed weight (prism_cg_total),
 * so no single task, however light (a nice-19 kthread's vruntime runs 100x
 * faster), drags it along. Every bound is a wall-time bound converted at the
 * clock's speed (prism_wall_to_vtime): under heavy weights the clock slows
 * down, and a bound fixed in virtual time would become seconds of waiting.
 *
 * A scheduler embeds a struct prism_fair in its task context and calls
 * prism_fair_start (ops.enable), prism_fair_woke (ops.runnable),
 * prism_fair_charge (ops.stopping), prism_fair_bound before it queues a
 * task, and prism_fair_deadline for the queue's order.
 */
#ifndef __PRISM_FAIR_DEADLINE_BPF_H
#define __PRISM_FAIR_DEADLINE_BPF_H

#include <prism/cgroup_share.bpf.h>

/* voluntary switches per second at which a task counts as fully interactive */
#define PRISM_NVCSW_FULL	128
#define PRISM_NVCSW_PERIOD_NS	(100ULL * 1000 * 1000)

struct prism_fair {
	__u64 vruntime;
	__u64 awake_runtime;	/* CPU time since it last woke */
	__u64 last_burst;	/* CPU time of its last run before it slept */
	__u64 weight;		/* effective weight: its part of its cgroup's share */
	__u64 nvcsw_since;	/* start of the voluntary-switch window */
	__u32 nvcsw;		/* voluntary switches in the window */
	__u32 avg_nvcsw;	/* per second, moving average */
};

static __u64 prism_vtime_now;

static __always_inline bool prism_vtime_before(__u64 a, __u64 b)
{
	return (__s64)(a - b) < 0;
}

/* The virtual time the fair clock advances in @ns of wall time with every CPU busy. */
static __always_inline __u64 prism_wall_to_vtime(__u64 ns, __u32 nr_cpus)
{
	__u64 busy = 100ULL * nr_cpus;
	__s64 total = prism_cg_total;

	if (total <= (__s64)busy)
		return ns;
	return ns * busy / total;
}

/*
 * The deadline once the task has run @extra_ns more: its vruntime plus the
 * weighted CPU time since it woke, capped at @awake_cap_ns of wall time
 * after scaling (so a light task's deadline stays near its vruntime).
 */
static __always_inline __u64 prism_fair_deadline(const struct prism_fair *f, __u64 extra_ns,
						 __u64 awake_cap_ns, __u32 nr_cpus)
{
	__u64 weight = f->weight ?: 1, awake, cap = prism_wall_to_vtime(awake_cap_ns, nr_cpus);

	awake = (f->awake_runtime + extra_ns) * 100 / weight;
	if (awake > cap)
		awake = cap;
	return f->vruntime + extra_ns * 100 / weight + awake;
}

/*
 * Bound the task's vruntime against the fair clock before it is queued. If
 * it is @waking, its credit is at most @lag_ns (doubled for a task that
 * wakes often, when @interactive_bonus; not scaled by weight, which
 * already speeds a heavy task's return to the front). Its debt is at least
 * one @slice_ns at its own weight (or the light threads of a many-threaded
 * cgroup are forgiven what they ran: 10 threads at cpu.weight 100 beside 2
 * at 300 got 1.3x their share), at least @lag_ns + @slice_ns of wall time,
 * and at most @debt_max_ns.
 */
static __always_inline void prism_fair_bound(struct prism_fair *f, bool waking, __u64 lag_ns,
					     bool interactive_bonus, __u64 slice_ns,
					     __u64 debt_max_ns, __u32 nr_cpus)
{
	__u64 weight = f->weight ?: 1, lag = lag_ns, debt;
	__u32 nvcsw = f->avg_nvcsw < PRISM_NVCSW_FULL ? f->avg_nvcsw : PRISM_NVCSW_FULL;

	if (interactive_bonus)
		lag += lag * nvcsw / PRISM_NVCSW_FULL;
	lag = prism_wall_to_vtime(lag, nr_cpus);
	debt = prism_wall_to_vtime(lag_ns + slice_ns, nr_cpus);
	if (debt < slice_ns * 100 / weight)
		debt = slice_ns * 100 / weight;
	if (debt > prism_wall_to_vtime(debt_max_ns, nr_cpus))
		debt = prism_wall_to_vtime(debt_max_ns, nr_cpus);
	if (waking && prism_vtime_before(f->vruntime, prism_vtime_now - lag))
		f->vruntime = prism_vtime_now - lag;
	else if (prism_vtime_before(prism_vtime_now + debt, f->vruntime))
		f->vruntime = prism_vtime_now + debt;
}

/*
 * Back from a cpu.max hold: at the fair clock at the earliest. It was held
 * for running, not asleep, so it has no credit to wake with: given to each
 * of hundreds of released tasks, a waking task's credit put a whole limited
 * tree ahead of an unlimited sibling's wakeups: its p99 beside 200 limited
 * cgroups was 21-38 ms, EEVDF's (where the tree competes as one entity)
 * 6-11 ms, and is 0.8-3.4 ms from the clock.
 */
static __always_inline void prism_fair_released(struct prism_fair *f)
{
	if (prism_vtime_before(f->vruntime, prism_vtime_now))
		f->vruntime = prism_vtime_now;
}

/* A task enters the scheduler: it starts at the clock, at weight 100. */
static __always_inline void prism_fair_start(struct prism_fair *f, __u64 now)
{
	f->vruntime = prism_vtime_now;
	f->weight = 100;
	f->nvcsw_since = now;
}

/* It woke (ops.runnable): a new burst; fold the window's switches into the rate. */
static __always_inline void prism_fair_woke(struct prism_fair *f, __u64 now)
{
	__u64 elapsed = now - f->nvcsw_since;

	f->awake_runtime = 0;
	if (elapsed >= PRISM_NVCSW_PERIOD_NS) {
		__u64 rate = (__u64)f->nvcsw * 1000000000ULL / elapsed;

		f->avg_nvcsw = (f->avg_nvcsw * 3 + rate) / 4;
		f->nvcsw = 0;
		f->nvcsw_since = now;
	}
}

/*
 * It ran @ran_ns (ops.stopping): charge its vruntime at its weight, move the
 * fair clock, and count a voluntary switch if it @slept.
 */
static __always_inline void prism_fair_charge(struct prism_fair *f, __u64 ran_ns, bool slept)
{
	__s64 total = prism_cg_total;

	f->awake_runtime += ran_ns;
	f->vruntime += ran_ns * 100 / (f->weight ?: 1);
	__sync_fetch_and_add(&prism_vtime_now, ran_ns * 100 / (total > 100 ? total : 100));
	if (slept) {
		f->nvcsw++;
		f->last_burst = f->awake_runtime;
	}
}

/*
 * Does the task, in a stint that started at @started_at, run only briefly
 * before it sleeps: under @burst_ns since it woke, and as little the time
 * before? (A waker that hands its CPU on: see the schedulers' wake_affine.)
 */
static __always_inline bool prism_fair_brief(const struct prism_fair *f, __u64 started_at,
					     __u64 now, __u64 burst_ns)
{
	return f->last_burst < burst_ns && f->awake_runtime + now - started_at < burst_ns;
}

#endif /* __PRISM_FAIR_DEADLINE_BPF_H */
