/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cgroup cpu.max for Prism's sched_ext schedulers: a cgroup never runs more
 * than its quota per period, and a limit caps all its descendants together
 * (a task's CPU time is charged to every limited cgroup above it).
 *
 * Each limited cgroup has a budget for its current period, refilled lazily
 * (by whoever looks at it after the period ended) with the quota, up to
 * quota + burst. A task starts with its slice cut to the smallest budget
 * left above it, so it stops near the end of the budget; the overrun (a
 * tick at most, per CPU; more than a small quota) is a debt the next
 * periods pay, so the long-run use is the quota. The debt is capped at
 * what PRISM_BW_WAIT_MAX_NS of periods pays (at least one quota), so a
 * throttled task waits at most that, or two periods if longer (cpu.max
 * periods are at most 1 s; the watchdog allows 5). A task whose cgroup (or an ancestor) has no budget is
 * throttled: it waits in PRISM_BW_DSQ, outside the run queues, ordered by
 * the time its budget comes back, and the next ops.dispatch after that time
 * moves it to the queue it would have gone to, from the fair clock
 * (prism_bw_on_release); a timer wakes an idle CPU for it. Unlimited
 * cgroups' tasks never meet a throttled one.
 *
 * A throttled task may hold a kernel lock (CFS had the same property until
 * it moved throttling to the return to user space, which sched_ext cannot
 * see): what needs the lock waits for the throttled task's next budget, at
 * most two periods. Where many need it in turn, that adds up: 400 shells
 * each moving itself into one of 200 cgroups at 1 ms per 200 ms, then
 * exec'ing a busy loop, took 107-178 s to start (EEVDF: 7.6 s), each mover
 * held inside its write to cgroup.procs with cgroup_mutex while the rest
 * waited for it (in cgroup_kn_lock_live). Holding at the return to user
 * space instead needs a task_work (bpf_task_work_schedule_resume, 6.18):
 * not done yet. The schedulers never hold a task preempted inside an
 * RCU read-side section (prism/rcu_reader.bpf.h): that one would hold up
 * every grace period of the machine.
 *
 * Needs cgroup_share.bpf.h included first.
 *
 * Limits come from the kernel (ops.cgroup_init's arguments and
 * ops.cgroup_set_bandwidth, 6.17 and later) or, on older kernels, from
 * user space reading cgroupfs (prism_bw_publish). The cgroups' parent links are
 * cgroup_share.bpf.h's hash, so no walk takes a cgroup reference. Until a
 * limit is set, nothing here costs more than one test of a global.
 *
 * A throttled task does not compete: the scheduler takes it out of its
 * cgroup's runnable count when it holds it (prism_cg_uncount), so a cgroup
 * whose tasks are all throttled leaves its siblings its share, as a
 * throttled group does under CFS, and counts it again in
 * prism_bw_on_release().
 *
 * The scheduler embeds a struct prism_bw_task in its task context and
 * defines prism_bw_task_of() and prism_bw_on_release(); it calls
 * prism_bw_set/prism_bw_exit from its cgroup callbacks, prism_bw_hold
 * where ops.enqueue would queue a task,
 * prism_bw_start from ops.running, prism_bw_charge (which says whether
 * the task may go on) where a run ends (or a
 * slice is extended), and prism_bw_release at the top of ops.dispatch.
 */
#ifndef __PRISM_CGROUP_BANDWIDTH_BPF_H
#define __PRISM_CGROUP_BANDWIDTH_BPF_H

/* the queue of throttled tasks (the schedulers' own DSQ ids are far below) */
#define PRISM_BW_DSQ		((1ULL << 32) + 1)
/* quotas at or above it are "max" (the kernel passes U64_MAX) */
#define PRISM_BW_QUOTA_MAX_US	(1ULL << 40)
/* throttled tasks moved back per ops.dispatch */
#define PRISM_BW_RELEASE_MAX	8
/* the longest wait a debt may cost (unless one period is longer) */
#define PRISM_BW_WAIT_MAX_NS	(2000ULL * 1000 * 1000)
/* how long the timer keeps looking after the last hold (see prism_bw_timer_fn) */
#define PRISM_BW_GRACE_NS	(10ULL * 1000 * 1000)
/* the shortest slice a task with a nearly spent budget gets */
#define PRISM_BW_SLICE_MIN_NS	(50ULL * 1000)
#define PRISM_BW_MAX		PRISM_CG_MAX
#ifndef PF_EXITING
#define PF_EXITING		0x00000004
#endif

struct prism_bw {
	__u64 quota_ns;		/* per period; 0: the entry is going away */
	__u64 period_ns;
	__u64 burst_ns;
	__s64 budget;		/* ns left in this period (< 0: a debt) */
	__u64 period_end;
	__u64 throttled_at;	/* 0 while it has budget */
	__u64 throttled_ns;	/* statistics: total time throttled */
	__u64 nr_throttled;	/* statistics: times throttled */
};

/* limited cgroups by cgroup id (read by user space for --stats) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, PRISM_BW_MAX);
	__type(key, __u64);
	__type(value, struct prism_bw);
} prism_bws SEC(".maps");

/* What the limits keep per task (in the task's context). */
struct prism_bw_task {
	__u64 charged_runtime;	/* its run time (se.sum_exec_runtime) when last charged */
	__u64 held_dsq;		/* while throttled: the queue it goes back to */
	__u64 held_vtime;	/* and its deadline there */
	bool charging;		/* charged_runtime is set (not so while running when we loaded) */
};

static struct prism_bw_task *prism_bw_task_of(struct task_struct *p);
/*
 * The scheduler counts a released task among its cgroup's runnable ones
 * again and gives its deadline in the queue it goes back to: from the fair
 * clock, no earlier (its deadline from before the wait was far behind the
 * clock by then, and a stream of released tasks went ahead of everything
 * else; with a waking task's credit, hundreds of them still did:
 * prism_fair_released).
 */
static __u64 prism_bw_on_release(struct task_struct *p, __u64 held_vtime);

/* limited cgroups now */
volatile __s64 nr_bw_limited;
/* statistics: tasks throttled, moved back */
volatile __u64 nr_bw_held, nr_bw_released;

struct prism_bw_timer {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct prism_bw_timer);
} prism_bw_timer_stor SEC(".maps");

/* when the timer fires next (0: not armed) */
static __u64 prism_bw_timer_at;
/* when a task was last held (the timer looks again until this is PRISM_BW_GRACE_NS old) */
static __u64 prism_bw_last_hold;

/*
 * The periods' clock: CLOCK_MONOTONIC, one clock for every CPU, as the
 * release timer's (and CFS's period timers). The scheduler's clock
 * (scx_bpf_now, the run queue's) is sched_clock, which the kernel keeps per
 * CPU once it finds the TSC unstable: a release computed on one CPU then
 * comes late on another. Run time, though, is charged as the kernel
 * accounts it (prism_bw_runtime), not by this clock: cpu.stat's usage,
 * which a limit bounds, sums the tasks' accounted time, and CFS charges the
 * same. (The lab's guest once did find its emulated TSC unstable, at a
 * random point under load, and CI's cpu.max tests failed in both
 * directions until the lab pinned the TSC reliable: ci/lab's tsc=reliable.)
 */
static __always_inline __u64 prism_bw_clock(void)
{
	return bpf_ktime_get_ns();
}

/* @p's run time as the kernel accounts it, and cpu.stat sums it (up to date in ops.stopping) */
static __always_inline __u64 prism_bw_runtime(const struct task_struct *p)
{
	return p->se.sum_exec_runtime;
}

/* Is (@period_us, @quota_us) a limit, as the kernel passes them? */
static __always_inline bool prism_bw_is_limit(__u64 period_us, __u64 quota_us)
{
	return period_us && quota_us && quota_us < PRISM_BW_QUOTA_MAX_US;
}

/*
 * cgroup @cgid's cpu.max is (@period_us, @quota_us, @burst_us) from @now on
 * (0: its first period ends when it is next looked at); the same limit
 * again changes nothing (its budget and debt are kept).
 */
static __always_inline s32 prism_bw_set_id(__u64 cgid, __u64 period_us, __u64 quota_us,
					   __u64 burst_us, __u64 now)
{
	struct prism_bw fresh = {}, *bw;

	if (!prism_bw_is_limit(period_us, quota_us)) {
		if (!bpf_map_delete_elem(&prism_bws, &cgid))
			__sync_fetch_and_sub(&nr_bw_limited, 1);
		return 0;
	}
	bw = bpf_map_lookup_elem(&prism_bws, &cgid);
	if (!bw) {
		if (bpf_map_update_elem(&prism_bws, &cgid, &fresh, BPF_NOEXIST))
			return -ENOMEM;
		bw = bpf_map_lookup_elem(&prism_bws, &cgid);
		if (!bw)
			return -ENOENT;
		__sync_fetch_and_add(&nr_bw_limited, 1);
	} else if (bw->period_ns == period_us * 1000 && bw->quota_ns == quota_us * 1000 &&
		   bw->burst_ns == burst_us * 1000) {
		return 0;
	}
	bw->period_ns = period_us * 1000;
	bw->burst_ns = burst_us * 1000;
	bw->quota_ns = quota_us * 1000;
	bw->budget = bw->quota_ns;
	bw->period_end = now ? now + bw->period_ns : 0;
	bw->throttled_at = 0;
	return 0;
}

/* @cgrp's cpu.max, from ops.cgroup_init's arguments or ops.cgroup_set_bandwidth. */
static __always_inline void prism_bw_set(struct cgroup *cgrp, __u64 period_us, __u64 quota_us,
					 __u64 burst_us)
{
	prism_bw_set_id(cgrp->kn->id, period_us, quota_us, burst_us, prism_bw_clock());
}

/* One cgroup's cpu.max, as user space publishes it (prism_bw_publish). */
struct prism_bw_limit {
	__u64 cgid;
	__u64 period_us;
	__u64 quota_us;	/* 0 or >= PRISM_BW_QUOTA_MAX_US: no limit */
	__u64 burst_us;
};

/*
 * Kernels before 6.17 (6.12 LTS) pass the scheduler no cpu.max: user space
 * reads cgroupfs and publishes each change here (BPF_PROG_RUN; prism_sched's
 * cpu_max.rs), into the same state ops.cgroup_set_bandwidth fills on newer
 * kernels. A limit for a cgroup this scheduler has not seen initialised
 * is refused (-ENOENT), so a limit cannot outlive its cgroup's
 * ops.cgroup_exit; user space publishes it again at its next poll. Lifting
 * a limit always succeeds (the cgroup may be gone already).
 */
SEC("syscall")
int prism_bw_publish(struct prism_bw_limit *lim)
{
	__u64 cgid = lim->cgid;

	if (prism_bw_is_limit(lim->period_us, lim->quota_us) && !prism_cg_lookup(cgid))
		return -ENOENT;
	/* the first period ends at the first look (this program has not the scheduler's clock) */
	return prism_bw_set_id(cgid, lim->period_us, lim->quota_us, lim->burst_us, 0);
}

/* A cgroup goes away (it has no tasks left): its limit with it. */
static __always_inline void prism_bw_exit(struct cgroup *cgrp)
{
	__u64 cgid = cgrp->kn->id;

	if (!bpf_map_delete_elem(&prism_bws, &cgid))
		__sync_fetch_and_sub(&nr_bw_limited, 1);
}

/* The largest debt @bw carries: what PRISM_BW_WAIT_MAX_NS of periods pays, at least a quota. */
static __always_inline __s64 prism_bw_max_debt(const struct prism_bw *bw)
{
	__u64 periods = PRISM_BW_WAIT_MAX_NS / bw->period_ns;

	return (__s64)((periods ?: 1) * bw->quota_ns);
}

/*
 * @bw with its budget refilled for the periods that ended by @now: a debt
 * (capped) is paid first, savings are kept up to the burst.
 */
static __always_inline void prism_bw_refill(struct prism_bw *bw, __u64 now)
{
	__u64 end = bw->period_end, period = bw->period_ns, quota = bw->quota_ns, k;
	__s64 budget, was;

	if (!period || (__s64)(now - end) < 0)
		return;
	k = (now - end) / period + 1;
	if (__sync_val_compare_and_swap(&bw->period_end, end, end + k * period) != end)
		return;
	/* as a difference added atomically: charges landing meanwhile are kept */
	was = budget = bw->budget;
	if (budget < -prism_bw_max_debt(bw))
		budget = -prism_bw_max_debt(bw);
	budget += (k < 4096 ? k : 4096) * quota;
	if (budget > (__s64)(quota + bw->burst_ns))
		budget = quota + bw->burst_ns;
	__sync_fetch_and_add(&bw->budget, budget - was);
	if (bw->throttled_at && budget > 0) {
		__sync_fetch_and_add(&bw->throttled_ns, now - bw->throttled_at);
		bw->throttled_at = 0;
	}
}

/*
 * Walk the limited cgroups from @cgid up: charge each @ran ns; return the
 * smallest budget left among them (S64_MAX: none is limited) and, in
 * @until, when the last of the throttled ones has budget again.
 */
static __always_inline __s64 prism_bw_walk(__u64 cgid, __u64 ran, __u64 *until)
{
	__s64 left = 0x7fffffffffffffffLL, debt;
	__u64 now = prism_bw_clock(), back;
	struct prism_bw *bw;
	struct prism_cg *cg;
	int i;

	*until = 0;
	bpf_for(i, 0, PRISM_CG_MAX_DEPTH + 1) {
		if (!cgid)
			break;
		bw = bpf_map_lookup_elem(&prism_bws, &cgid);
		if (bw && bw->quota_ns) {
			prism_bw_refill(bw, now);
			if (ran)
				__sync_fetch_and_sub(&bw->budget, ran);
			if (bw->budget < left)
				left = bw->budget;
			if (bw->budget <= 0) {
				/* the refill that pays the (capped) debt */
				debt = -bw->budget;
				if (debt > prism_bw_max_debt(bw))
					debt = prism_bw_max_debt(bw);
				back = bw->period_end + debt / bw->quota_ns * bw->period_ns;
				if (!bw->throttled_at) {
					bw->throttled_at = now;
					__sync_fetch_and_add(&bw->nr_throttled, 1);
				}
				if (back > *until)
					*until = back;
			}
		}
		cg = prism_cg_lookup(cgid);
		if (!cg)
			break;
		cgid = cg->parent;
	}
	return left;
}

/* The smallest budget left above a task counted in @cgid (S64_MAX: no limit). */
static __always_inline __s64 prism_bw_left(__u64 cgid, __u64 *until)
{
	*until = 0;
	if (nr_bw_limited <= 0 || !cgid)
		return 0x7fffffffffffffffLL;
	return prism_bw_walk(cgid, 0, until);
}

static int prism_bw_timer_fn(void *map, int *key, struct bpf_timer *timer);

/* Make sure a CPU looks at the throttled queue at @until. */
static __always_inline void prism_bw_arm(__u64 until)
{
	struct prism_bw_timer *t = bpf_map_lookup_elem(&prism_bw_timer_stor, &(__u32){0});
	__u64 at = prism_bw_timer_at, now = prism_bw_clock();

	if (!t || (at && (__s64)(at - until) <= 0 && (__s64)(at - now) > 0))
		return;
	prism_bw_timer_at = until;
	bpf_timer_start(&t->timer, (__s64)(until - now) > 0 ? until - now : 1000, 0);
}

/*
 * From ops.enqueue, where @p would go into @dsq at @vtime: if a cgroup
 * above it has no budget, hold it instead
 * and say so. Exiting tasks are never held: they are leaving.
 */
static __always_inline bool prism_bw_hold(struct task_struct *p, __u64 dsq, __u64 vtime,
					  __u64 slice, __u64 enq_flags)
{
	struct prism_bw_task *bt;
	__u64 until;

	if (nr_bw_limited <= 0 || (p->flags & PF_EXITING) ||
	    prism_bw_left(prism_cg_task_cgid(p), &until) > 0 ||
	    !until || !(bt = prism_bw_task_of(p)))
		return false;
	bt->held_dsq = dsq;
	bt->held_vtime = vtime;
	scx_bpf_dsq_insert_vtime(p, PRISM_BW_DSQ, slice, until, enq_flags);
	__sync_fetch_and_add(&nr_bw_held, 1);
	/* (an exchange: a full barrier before prism_bw_arm reads the timer's time) */
	__sync_lock_test_and_set(&prism_bw_last_hold, prism_bw_clock());
	prism_bw_arm(until);
	return true;
}

/* Is @p's cgroup (or an ancestor) out of budget (for paths that skip enqueue)? */
static __always_inline bool prism_bw_throttled(struct task_struct *p)
{
	__u64 until;

	return nr_bw_limited > 0 && prism_bw_left(prism_cg_task_cgid(p), &until) <= 0;
}

/*
 * From ops.running (and where a slice is extended): charging starts now,
 * and the slice ends within the smallest budget left above the task.
 */
static __always_inline void prism_bw_start(struct task_struct *p, struct prism_bw_task *bt)
{
	__u64 until;
	__s64 left;

	bt->charged_runtime = prism_bw_runtime(p);
	bt->charging = true;
	if (nr_bw_limited <= 0)
		return;
	left = prism_bw_left(prism_cg_task_cgid(p), &until);
	if (left < (__s64)PRISM_BW_SLICE_MIN_NS)
		left = PRISM_BW_SLICE_MIN_NS;
	if ((__u64)left < p->scx.slice)
		p->scx.slice = left;
}

/*
 * Charge @p's run since the last charge to the limits above it: may it go
 * on (budget left everywhere above it)? One walk does both. (Its run
 * time only: no clock is read here while no cgroup is limited.)
 */
static __always_inline bool prism_bw_charge(struct task_struct *p, struct prism_bw_task *bt)
{
	__u64 runtime = prism_bw_runtime(p), until;
	/* (running when the scheduler loaded: charging starts here) */
	__u64 ran = bt->charging ? runtime - bt->charged_runtime : 0;

	bt->charged_runtime = runtime;
	bt->charging = true;
	if (nr_bw_limited <= 0)
		return true;
	return prism_bw_walk(prism_cg_task_cgid(p), ran, &until) > 0;
}

/*
 * Wake a CPU that may run @p, just moved back to a queue: an idle one it
 * may run on, successive calls going round the idle CPUs
 * (bpf_cpumask_any_and_distribute), so the tasks one dispatch moves back
 * wake every idle CPU (it kicked the task's last CPU only, usually the
 * releasing one, and the others idled beside the queue until an unrelated
 * event, a period at worst); else its last CPU, if that is idle. (Skipping
 * the releasing CPU as well made scx_prism's limited critical hogs overrun
 * their limit, 0.214-0.257 of 0.2 in 2 of 4 runs: not understood yet.)
 */
static __always_inline void prism_bw_kick_for(struct task_struct *p)
{
	const struct cpumask *idle = scx_bpf_get_idle_cpumask();
	u32 nr = scx_bpf_nr_cpu_ids();
	u32 cpu = bpf_cpumask_any_and_distribute(idle, p->cpus_ptr);

	scx_bpf_put_idle_cpumask(idle);
	if (cpu >= nr)
		cpu = scx_bpf_task_cpu(p);
	scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
}

/*
 * From ops.dispatch, first: move the throttled tasks whose budget is back
 * to the queues they were headed for (deadlines from prism_bw_on_release),
 * a few per call; the rest wait for the next dispatch or the timer.
 */
static __always_inline void prism_bw_release(void)
{
	struct prism_bw_task *bt;
	struct task_struct *p;
	__u64 now, vtime;
	u32 n = 0;

	if (!nr_bw_held || !scx_bpf_dsq_nr_queued(PRISM_BW_DSQ))
		return;
	now = prism_bw_clock();
	bpf_for_each(scx_dsq, p, PRISM_BW_DSQ, 0) {
		if ((__s64)(p->scx.dsq_vtime - now) > 0 || ++n > PRISM_BW_RELEASE_MAX)
			break;
		bt = prism_bw_task_of(p);
		if (!bt)
			continue;
		vtime = prism_bw_on_release(p, bt->held_vtime);
		scx_bpf_dsq_move_set_vtime(BPF_FOR_EACH_ITER, vtime);
		if (scx_bpf_dsq_move_vtime(BPF_FOR_EACH_ITER, p, bt->held_dsq, 0)) {
			__sync_fetch_and_add(&nr_bw_released, 1);
			prism_bw_kick_for(p);
		}
	}
}

/*
 * At the first throttled task's release time: wake idle CPUs to move it
 * back; then sleep until the next one's (at least 1 ms: busy CPUs move
 * them back from ops.dispatch too). With none held, the timer stops, but
 * not before PRISM_BW_GRACE_NS after the last hold: ops.enqueue inserts a
 * held task only after it returns, so a hold racing this callback may be
 * missing from the queue it looks at, and may have seen the time this
 * callback was armed for and not armed it again (its time is cleared, and
 * the hold's time read, across full barriers: one of the two sees the
 * other). Stopping then would leave the task held with every CPU idle.
 */
static int prism_bw_timer_fn(void *map, int *key, struct bpf_timer *timer)
{
	s32 cpu, nr = scx_bpf_nr_cpu_ids();
	__u64 now = prism_bw_clock(), next = now + 1000000, head_at = 0;
	struct task_struct *head;

	__sync_lock_test_and_set(&prism_bw_timer_at, 0);
	/* before 6.13 the peek is an iterator, which wants RCU here */
	bpf_rcu_read_lock();
	head = __COMPAT_scx_bpf_dsq_peek(PRISM_BW_DSQ);
	if (head)
		head_at = head->scx.dsq_vtime;
	bpf_rcu_read_unlock();
	if (!head) {
		if ((__s64)(now - prism_bw_last_hold) >= (__s64)PRISM_BW_GRACE_NS)
			return 0;
	} else if ((__s64)(head_at - now) <= 0) {
		bpf_for(cpu, 0, nr) {
			if (cpu >= 1024)
				break;
			scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
		}
	} else if ((__s64)(head_at - next) > 0) {
		next = head_at;
	}
	prism_bw_arm(next);
	return 0;
}

/* From ops.init: the throttled queue and its timer. */
static __always_inline s32 prism_bw_init(void)
{
	struct prism_bw_timer *t = bpf_map_lookup_elem(&prism_bw_timer_stor, &(__u32){0});
	s32 err = scx_bpf_create_dsq(PRISM_BW_DSQ, -1);

	if (err)
		return err;
	if (!t)
		return -ESRCH;
	bpf_timer_init(&t->timer, &prism_bw_timer_stor, 1 /* CLOCK_MONOTONIC */);
	bpf_timer_set_callback(&t->timer, prism_bw_timer_fn);
	return 0;
}

#endif /* __PRISM_CGROUP_BANDWIDTH_BPF_H */
