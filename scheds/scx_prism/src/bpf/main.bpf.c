/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * scx_prism: the BPF side of an identity-aware scheduler whose policy runs in
 * user space (the scx_rustland design, written for Prism).
 *
 * Every task the kernel cannot place at once is sent to user space in a
 * queued_task record that carries its cgroup, its Prism identity, latency
 * class and weight (resolved from the bus through the per-task cache of
 * prism/bus.bpf.h: no hash lookup in steady state) and its cgroup's
 * cpu.weight. User space answers through a user ring buffer with a CPU, a
 * slice and an order; an answer for an older enqueue is cancelled.
 *
 * What never waits for user space: per-CPU kthreads and memory reclaim
 * (a page fault must never depend on the user scheduler), any task waking
 * while a CPU is idle (dispatched here, straight to that CPU), and a task
 * arriving while the ring buffer is full (the shared queue takes it). A
 * task waking with no CPU idle preempts a CPU running a lower class (a
 * critical one: batch, else normal), or longer-running work of its own
 * class if it is interactive, at once; a lower-class task it stops resumes
 * from the shared queue without a round trip. A task woken by a same-class
 * waker that only runs briefly runs next on the waker's CPU instead, ahead
 * of that CPU's queues, a few times in a row at most (wake-affine). A 1 s
 * heartbeat keeps an idle user scheduler from looking like a stall.
 */
#include <scx/common.bpf.h>
#include <bpf_experimental.h>
#include <prism/bus.bpf.h>
#include <prism/bus_resolve.bpf.h>
#include <prism/cgroup_weight.bpf.h>
#include <prism/class_rank.bpf.h>
#include "intf.h"

_Static_assert(PRISM_CLASS_SLOTS == PRISM_NR_CLASSES, "intf.h and class_rank.bpf.h disagree");

char _license[] SEC("license") = "GPL";

UEI_DEFINE(uei);

/*
 * DSQs: one per CPU and one shared, both ordered by dsq_vtime (a DSQ is
 * either FIFO or ordered, never both), and a FIFO one for the user scheduler.
 */
#define SHARED_DSQ	MAX_CPUS
#define SCHED_DSQ	(MAX_CPUS + 1)

#define NSEC_PER_SEC	1000000000ULL
#define HEARTBEAT_NS	NSEC_PER_SEC
#define CLOCK_BOOTTIME	7

/* set by user space before load */
const volatile u32 usersched_pid;
const volatile u32 khugepaged_pid;
const volatile u64 slice_ns = 5000000ULL;
const volatile bool preempt_lower = true;
/* a task that ran less than this before sleeping is interactive */
const volatile u64 interactive_burst_ns = 2500000ULL;
/*
 * an interactive waker may preempt a same-class task that ran this long (and
 * a normal one a batch task); it waits for that, not for the tick
 */
const volatile u64 preempt_min_run_ns = 500000ULL;
/* a waker that runs less than this before it sleeps hands its CPU to its wakee (0: never) */
const volatile u64 affine_burst_ns = 500000ULL;

/* set by user space while normal+batch are below their minimum share */
volatile bool lower_classes_starving;

/* read and written by user space */
volatile u64 nr_queued;		/* records in the ring buffer, not yet read */
volatile u64 nr_scheduled;	/* tasks user space holds */
volatile u64 nr_running;
volatile u64 nr_online_cpus;
u64 usersched_last_run_at;
/* the latest order user space gave (it counts up, one per decision) */
static u64 last_user_vtime;

/* statistics, read by user space */
volatile u64 nr_user_dispatches, nr_kernel_dispatches, nr_direct_critical,
	     nr_cancel_dispatches, nr_bounce_dispatches, nr_congested,
	     nr_direct_preempt, nr_deferred_preempt, nr_resumed, nr_affine;
/* CPU time consumed per class, for the policy loop's share guard */
volatile u64 class_runtime_ns[PRISM_NR_CLASSES];

static u64 nr_cpu_ids;

#define MAX_ENQUEUED_TASKS 4096
/* a preempted task with less slice left than this goes back to user space */
#define MIN_RESUME_NS	100000ULL
/*
 * Wakees placed on one CPU's local queue since it last went through
 * ops.dispatch: a local task runs before dispatch is asked, so a ping-pong
 * pair handing the CPU back and forth would otherwise starve its queues.
 */
#define AFFINE_CHAIN_MAX 4

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MAX_ENQUEUED_TASKS * sizeof(struct queued_task));
} queued SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, MAX_ENQUEUED_TASKS * sizeof(struct dispatched_task));
} dispatched SEC(".maps");

struct task_ctx {
	u64 start_ts;
	u64 stop_ts;
	u64 stint_slice;	/* the slice it had when it last started running */
	u64 resume_slice;	/* what was left of it when a kick preempted it */
	u64 carried_ns;		/* CPU time of resumed stints not yet reported */
	u64 exec_runtime;
	u64 vruntime;
	u64 enq_cnt;
	u64 enq_ts;		/* when it last became ready to run, 0 once running */
	u64 last_wait_ns;	/* from ready to running, last time */
	u64 last_burst_ns;	/* CPU time of its last run before it slept */
	u32 class;		/* class at the last resolution, for accounting */
	u32 last_wait_class;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctx_stor SEC(".maps");

/* class of the task running on each CPU, to choose whom a critical task preempts */
struct cpu_ctx {
	u64 started_at;		/* when the current task started running */
	u32 class;
	u32 running;
	u32 preempting;		/* a preemption kick is on its way */
	u32 affine_chain;	/* wake-affine placements since the last dispatch */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct cpu_ctx);
} cpu_ctx_stor SEC(".maps");

/*
 * One per CPU: a preemption put off until the task that CPU runs has had
 * preempt_min_run_ns (see defer_preempt).
 */
struct preempt_timer {
	struct bpf_timer timer;
	u64 victim_started_at;	/* the stint it preempts: a later one is spared */
	u32 class;		/* of the waiting task */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CPUS);
	__type(key, u32);
	__type(value, struct preempt_timer);
} preempt_timers SEC(".maps");

struct heartbeat {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct heartbeat);
} heartbeat_stor SEC(".maps");

static volatile u32 usersched_needed;

static struct task_ctx *lookup_task_ctx(const struct task_struct *p)
{
	return bpf_task_storage_get(&task_ctx_stor, (struct task_struct *)p, 0, 0);
}

static inline bool is_usersched(const struct task_struct *p)
{
	return p->pid == usersched_pid;
}

/*
 * Tasks that must never wait for user space: per-CPU kthreads, reclaim, and
 * the user scheduler's own helper threads (stats server, signal handler),
 * which may hold a lock, such as the allocator's, that the scheduling thread
 * needs: queueing them behind it would deadlock.
 */
static inline bool bypasses_usersched(const struct task_struct *p)
{
	if ((p->flags & PF_KTHREAD) && p->nr_cpus_allowed == 1)
		return true;
	if (p->tgid == usersched_pid)
		return true;
	if (p->flags & (PF_KSWAPD | PF_KCOMPACTD))
		return true;
	return khugepaged_pid && p->pid == khugepaged_pid;
}

static u64 cpu_dsq(s32 cpu)
{
	if (cpu < 0 || cpu >= MAX_CPUS) {
		scx_bpf_error("invalid cpu %d", cpu);
		return SHARED_DSQ;
	}
	return (u64)cpu;
}

static bool usersched_has_work(void)
{
	if (__sync_fetch_and_and(&usersched_needed, 0))
		return true;
	if (nr_scheduled)
		return true;
	return bpf_ringbuf_query(&queued, BPF_RB_AVAIL_DATA) > 0;
}

/* An idle CPU may take a task directly only if nothing waits before it. */
static bool can_direct_dispatch(s32 cpu)
{
	return !scx_bpf_dsq_nr_queued(SHARED_DSQ) && !scx_bpf_dsq_nr_queued(cpu_dsq(cpu));
}

/* Resolve the task's class now and remember it for accounting. */
static struct prism_task_info *refresh_class(struct task_struct *p, struct task_ctx *tctx)
{
	struct prism_task_info *info = prism_resolve_counted(p);

	tctx->class = info ? prism_known_class(info->flags) : PRISM_CLASS_UNSET;
	return info;
}

/*
 * The CPU a waking task should take when none is idle, or -1 to queue:
 *  - critical takes, at once, a CPU running the lowest class below it
 *    (batch first), unless normal+batch are below their minimum share;
 *  - normal (and unlabelled) takes a CPU running batch, or, if the waker is
 *    interactive, running same-class work, once that has run for
 *    preempt_min_run_ns (EEVDF's wakeup preemption, with a minimum run);
 *  - critical also takes same-class CPUs on those terms;
 *  - batch preempts nobody.
 * For a wakeup (@at_wakeup), the CPU it runs on goes first among equals:
 * elsewhere, as in ops.dispatch, this CPU is about to switch tasks anyway.
 * With @wait_ns, a CPU whose task has not yet run its minimum may be the
 * answer when no other is: *wait_ns is then how long it still has to run.
 */
static s32 preemption_victim(const struct task_struct *p, struct task_ctx *tctx, bool at_wakeup,
			     u64 *wait_ns)
{
	u32 rank = prism_class_rank(tctx->class), best = rank;
	bool interactive = tctx->last_burst_ns < interactive_burst_ns;
	u64 now = scx_bpf_now(), longest = 0, soonest = preempt_min_run_ns;
	s32 cpu, victim = -1, later = -1, this_cpu = at_wakeup ? bpf_get_smp_processor_id() : -1;

	if (rank == 0 || (rank == 2 && lower_classes_starving))
		return -1;

	bpf_for(cpu, 0, nr_cpu_ids) {
		struct cpu_ctx *cctx;
		u64 ran;
		u32 r;

		if (cpu >= MAX_CPUS)
			break;
		if (!bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
			continue;
		cctx = bpf_map_lookup_percpu_elem(&cpu_ctx_stor, &(u32){0}, cpu);
		if (!cctx || !cctx->running)
			continue;
		r = prism_class_rank(cctx->class);
		ran = now - cctx->started_at;
		if (r > rank || (r == rank && !interactive))
			continue;
		if ((rank < 2 || r == rank) && ran < preempt_min_run_ns) {
			/* protected for now: the one whose protection ends first */
			if (preempt_min_run_ns - ran <= soonest) {
				later = cpu;
				soonest = preempt_min_run_ns - ran;
			}
			continue;
		}
		/*
		 * The lowest class first, then the CPU this wakeup runs on (no
		 * IPI: under emulation the dearest part of a preemption), then
		 * the longest-running.
		 */
		if (r < best ||
		    (r == best && victim != this_cpu && (cpu == this_cpu || ran > longest))) {
			victim = cpu;
			best = r;
			longest = ran;
		}
	}
	if (victim < 0 && wait_ns && later >= 0) {
		*wait_ns = soonest;
		return later;
	}
	return victim;
}

/*
 * Preempt what @cpu runs for a task of @class. If that is a lower class,
 * the task it stops resumes from BPF (see resume_preempted): a class
 * preemption costs the user scheduler nothing. Same-class work goes back
 * through user space, whose deadlines decide between it and later wakers.
 */
static void kick_preempt(s32 cpu, u32 class)
{
	struct cpu_ctx *cctx = bpf_map_lookup_percpu_elem(&cpu_ctx_stor, &(u32){0}, cpu);

	if (cctx && prism_class_rank(cctx->class) < prism_class_rank(class))
		cctx->preempting = 1;
	scx_bpf_kick_cpu(cpu, SCX_KICK_PREEMPT);
}

/*
 * Preempt @cpu for a task of @class in @wait_ns, when the stint it runs now
 * has had its minimum run. Without this the waiting task would wait for the
 * stint's slice to end, which the kernel checks only at the tick (4 ms at
 * HZ=250, whatever the slice).
 */
static bool defer_preempt(s32 cpu, u32 class, u64 wait_ns)
{
	struct cpu_ctx *cctx = bpf_map_lookup_percpu_elem(&cpu_ctx_stor, &(u32){0}, cpu);
	u32 key = cpu;
	struct preempt_timer *pt = bpf_map_lookup_elem(&preempt_timers, &key);

	if (!cctx || !pt)
		return false;
	/*
	 * Waiters deferred on one stint are all of one rank (critical waits
	 * only for critical, normal for normal or batch): the latest speaks for all.
	 */
	pt->class = class;
	pt->victim_started_at = cctx->started_at;
	return !bpf_timer_start(&pt->timer, wait_ns, 0);
}

/* The deferred preemption of one CPU, if that CPU still runs the same stint. */
static int preempt_timer_fn(void *map, u32 *key, struct preempt_timer *pt)
{
	s32 cpu = *key;
	struct cpu_ctx *cctx = bpf_map_lookup_percpu_elem(&cpu_ctx_stor, &(u32){0}, cpu);

	if (cctx && cctx->running && cctx->started_at == pt->victim_started_at)
		kick_preempt(cpu, pt->class);
	return 0;
}

/*
 * A waking task with no CPU idle takes its victim's CPU from BPF: no
 * user-space round trip on the path that decides its latency. At once if
 * the victim has had its minimum run, else as soon as it has (a timer). The
 * task it preempts resumes from BPF if it is of a lower class
 * (kick_preempt), else goes back through user space.
 */
static bool preempt_for(struct task_struct *p, struct task_ctx *tctx, u64 enq_flags)
{
	u64 wait_ns = 0;
	s32 cpu = preemption_victim(p, tctx, true, &wait_ns);

	if (cpu < 0)
		return false;
	/* at the head: ahead of a wakee already placed there (wake_affine) */
	scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL_ON | cpu, slice_ns, enq_flags | SCX_ENQ_HEAD);
	if (wait_ns && defer_preempt(cpu, tctx->class, wait_ns)) {
		__sync_fetch_and_add(&nr_deferred_preempt, 1);
		return true;
	}
	kick_preempt(cpu, tctx->class);
	__sync_fetch_and_add(&nr_direct_preempt, 1);
	if (tctx->class == PRISM_CLASS_CRITICAL)
		__sync_fetch_and_add(&nr_direct_critical, 1);
	return true;
}

/*
 * Wake an idle CPU that can run @p (it will run the user scheduler or take
 * @p from the shared queue); false if none is idle.
 */
static bool kick_idle_cpu(const struct task_struct *p, s32 prev_cpu)
{
	s32 cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);

	scx_bpf_kick_cpu(cpu >= 0 ? cpu : prev_cpu, SCX_KICK_IDLE);
	return cpu >= 0;
}

/*
 * A critical task that goes through user space with no CPU idle must not
 * wait for a lower class's slice to end (batch slices are several base
 * slices) before the user scheduler, or the task itself, gets a CPU:
 * preempt the CPU it would have taken at wakeup.
 */
static void hurry_critical(struct task_struct *p, struct task_ctx *tctx)
{
	s32 cpu;

	if (!preempt_lower || tctx->class != PRISM_CLASS_CRITICAL)
		return;
	cpu = preemption_victim(p, tctx, false, NULL);
	if (cpu >= 0)
		kick_preempt(cpu, tctx->class);
}

/* Is @cpu running a class below critical (so a critical task may take it)? */
static bool runs_lower_class(s32 cpu)
{
	struct cpu_ctx *cctx = bpf_map_lookup_percpu_elem(&cpu_ctx_stor, &(u32){0}, cpu);

	return cctx && cctx->running && prism_class_rank(cctx->class) < 2 && !lower_classes_starving;
}

static s32 pick_idle_cpu(struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	if (p->nr_cpus_allowed == 1)
		return scx_bpf_test_and_clear_cpu_idle(prev_cpu) ? prev_cpu : -EBUSY;

	if (!__COMPAT_HAS_scx_bpf_select_cpu_and) {
		bool is_idle = false;
		s32 cpu;

		if (!wake_flags)
			return -EBUSY;
		cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
		return is_idle ? cpu : -EBUSY;
	}
	return scx_bpf_select_cpu_and(p, prev_cpu, wake_flags, p->cpus_ptr, 0);
}

/*
 * With no CPU idle, a waker that only runs briefly before it sleeps (a
 * dispatcher handing out work, an RPC hop) hands its CPU to the same-class
 * task it wakes: placed first on the waker's CPU, the wakee runs as soon as
 * the waker sleeps, with no preemption and no IPI. Never for batch, nor
 * with anything already placed there; a wakee of a higher class preempts
 * instead (preempt_for). The waker's slice is cut to the burst it was
 * expected to stay within, and a CPU takes at most AFFINE_CHAIN_MAX such
 * wakees in a row before its queues are served.
 */
static bool wake_affine(struct task_struct *p, struct task_ctx *tctx)
{
	struct task_struct *waker = bpf_get_current_task_btf();
	struct cpu_ctx *cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	s32 cpu = bpf_get_smp_processor_id();
	struct task_ctx *wctx;
	u32 rank;

	/*
	 * cctx->running: a task of ours other than the user scheduler runs here
	 * (ops.running sets it, ops.stopping clears it, also when an RT task
	 * takes the CPU), so current is it. A wakeup in irq context has no
	 * waker; the kernel does not mark timer wakeups so (measured), and the
	 * burst test below is what keeps an interrupted hog from counting.
	 */
	if (!bpf_in_task() || !cctx || !cctx->running || cctx->affine_chain >= AFFINE_CHAIN_MAX ||
	    (waker->flags & PF_KTHREAD) || bypasses_usersched(p) ||
	    !bpf_cpumask_test_cpu(cpu, p->cpus_ptr) || scx_bpf_dsq_nr_queued(SCX_DSQ_LOCAL))
		return false;
	wctx = lookup_task_ctx(waker);
	if (!wctx || wctx->last_burst_ns >= affine_burst_ns ||
	    wctx->exec_runtime + scx_bpf_now() - wctx->start_ts >= affine_burst_ns)
		return false;
	refresh_class(p, tctx);
	rank = prism_class_rank(tctx->class);
	if (rank == 0 || rank != prism_class_rank(wctx->class) || (rank == 2 && lower_classes_starving))
		return false;
	scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_ns, 0);
	if (waker->scx.slice > affine_burst_ns)
		scx_bpf_task_set_slice(waker, affine_burst_ns);
	cctx->affine_chain++;
	__sync_fetch_and_add(&nr_affine, 1);
	return true;
}

/*
 * A waking task with an idle CPU runs there without asking user space: a
 * round trip would only add latency to a decision that has one answer.
 */
s32 BPF_STRUCT_OPS(prism_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	struct task_ctx *tctx;
	s32 cpu;

	if (!bpf_cpumask_test_cpu(prev_cpu, p->cpus_ptr))
		prev_cpu = bpf_cpumask_first(p->cpus_ptr);
	if (is_usersched(p))
		return prev_cpu;

	cpu = pick_idle_cpu(p, prev_cpu, wake_flags);
	if (cpu >= 0) {
		if (can_direct_dispatch(cpu)) {
			scx_bpf_dsq_insert_vtime(p, cpu_dsq(cpu), slice_ns, 0, 0);
			__sync_fetch_and_add(&nr_kernel_dispatches, 1);
			tctx = lookup_task_ctx(p);
			if (tctx && refresh_class(p, tctx) && tctx->class == PRISM_CLASS_CRITICAL)
				__sync_fetch_and_add(&nr_direct_critical, 1);
		}
		return cpu;
	}
	if (affine_burst_ns && (wake_flags & SCX_WAKE_TTWU) && (tctx = lookup_task_ctx(p)) &&
	    wake_affine(p, tctx))
		return bpf_get_smp_processor_id();
	return prev_cpu;
}

static void fill_record(struct queued_task *t, struct task_struct *p, struct task_ctx *tctx,
			struct prism_task_info *info, u64 enq_flags, s32 prev_cpu)
{
	t->pid = p->pid;
	t->cpu = prev_cpu;
	t->nr_cpus_allowed = p->nr_cpus_allowed;
	t->flags = enq_flags;
	/* its resumed stints count as one run since its last record */
	t->start_ts = tctx->start_ts - tctx->carried_ns;
	tctx->carried_ns = 0;
	t->stop_ts = tctx->stop_ts;
	t->exec_runtime = tctx->exec_runtime;
	t->vruntime = tctx->vruntime;
	t->enq_cnt = ++tctx->enq_cnt;
	t->woke = !!(enq_flags & SCX_ENQ_WAKEUP);
	/* each wait is reported once */
	t->last_wait_ns = tctx->last_wait_ns;
	t->last_wait_class = tctx->last_wait_class;
	tctx->last_wait_ns = 0;
	t->nice_weight = p->scx.weight;
	t->cgroup_weight = prism_cgroup_weight(p);
	if (info) {
		t->cgroup_id = info->cgroup_id;
		t->identity = info->identity;
		t->class = prism_known_class(info->flags);
		t->bus_weight = prism_weight(info->flags);
		t->bus_source = info->source;
	} else {
		t->cgroup_id = prism_task_cgroup_id(p);
		t->identity = 0;
		t->class = PRISM_CLASS_UNSET;
		t->bus_weight = 0;
		t->bus_source = BUS_MISS;
	}
	bpf_probe_read_kernel_str(t->comm, sizeof(t->comm), p->comm);
}

/* Hand a task to user space; if its ring buffer is full, to the shared queue. */
static void queue_to_usersched(struct task_struct *p, struct task_ctx *tctx,
			       struct prism_task_info *info, s32 prev_cpu, u64 enq_flags)
{
	struct queued_task *t;

	/* a task re-queued at the end of its slice waits from now */
	if (!tctx->enq_ts)
		tctx->enq_ts = scx_bpf_now();

	t = bpf_ringbuf_reserve(&queued, sizeof(*t), 0);
	if (!t) {
		__sync_fetch_and_add(&nr_congested, 1);
		scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, slice_ns, 0, enq_flags);
		__sync_fetch_and_add(&nr_kernel_dispatches, 1);
		return;
	}
	fill_record(t, p, tctx, info, enq_flags, prev_cpu);
	bpf_ringbuf_submit(t, 0);
	__sync_fetch_and_add(&nr_queued, 1);

}

/*
 * A normal or batch task a higher class's kick preempted goes back to the
 * shared queue without a round trip, with what was left of its slice,
 * ordered as if user space had placed it after every task it holds now; its
 * next record reports both stints.
 * (The kick zeroes the slice: the preempting side's mark is the only way to
 * tell.) Critical tasks, and tasks user space pinned to a CPU's queue, go
 * through user space again.
 */
static bool resume_preempted(struct task_struct *p, struct task_ctx *tctx, s32 cpu,
			     u64 enq_flags)
{
	u64 slice = tctx->resume_slice;

	tctx->resume_slice = 0;
	if (!slice || (enq_flags & SCX_ENQ_WAKEUP) || tctx->class == PRISM_CLASS_CRITICAL ||
	    p->nr_cpus_allowed < nr_online_cpus)
		return false;
	tctx->carried_ns += tctx->stop_ts - tctx->start_ts;
	/* its wait from now counts in the wait statistics like any other */
	if (!tctx->enq_ts)
		tctx->enq_ts = scx_bpf_now();
	scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, slice, last_user_vtime + nr_scheduled + 2,
				 enq_flags);
	__sync_fetch_and_add(&nr_kernel_dispatches, 1);
	__sync_fetch_and_add(&nr_resumed, 1);
	kick_idle_cpu(p, cpu);
	return true;
}

void BPF_STRUCT_OPS(prism_enqueue, struct task_struct *p, u64 enq_flags)
{
	s32 prev_cpu = scx_bpf_task_cpu(p), cpu;
	struct prism_task_info *info;
	struct task_ctx *tctx;
	bool queued_wakeup = !__COMPAT_is_enq_cpu_selected(enq_flags) && !scx_bpf_task_running(p);

	if (is_usersched(p)) {
		scx_bpf_dsq_insert(p, SCHED_DSQ, slice_ns, enq_flags);
		return;
	}
	if (bypasses_usersched(p)) {
		/* vtime 0: ahead of everything user space placed */
		if (p->nr_cpus_allowed == 1)
			scx_bpf_dsq_insert_vtime(p, cpu_dsq(prev_cpu), slice_ns, 0, enq_flags);
		else
			scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, slice_ns, 0, enq_flags);
		__sync_fetch_and_add(&nr_kernel_dispatches, 1);
		scx_bpf_kick_cpu(prev_cpu, SCX_KICK_IDLE);
		return;
	}

	/* A wakeup whose select_cpu was skipped still deserves an idle CPU. */
	if (queued_wakeup) {
		cpu = pick_idle_cpu(p, prev_cpu, 0);
		if (cpu >= 0 && can_direct_dispatch(cpu) && bpf_cpumask_test_cpu(cpu, p->cpus_ptr)) {
			scx_bpf_dsq_insert_vtime(p, cpu_dsq(cpu), slice_ns, 0, enq_flags);
			__sync_fetch_and_add(&nr_kernel_dispatches, 1);
			scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
			return;
		}
		if (cpu >= 0)
			prev_cpu = cpu;
	}

	tctx = lookup_task_ctx(p);
	if (!tctx) {
		scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, slice_ns, 0, enq_flags);
		return;
	}
	if (resume_preempted(p, tctx, prev_cpu, enq_flags))
		return;
	/* one resolution serves both the preemption choice and the record */
	info = refresh_class(p, tctx);
	if (preempt_lower && (enq_flags & SCX_ENQ_WAKEUP) && preempt_for(p, tctx, enq_flags))
		return;

	queue_to_usersched(p, tctx, info, prev_cpu, enq_flags);
	/* a wakeup's victim search just ran in preempt_for: no second scan */
	if (!kick_idle_cpu(p, prev_cpu) && !(enq_flags & SCX_ENQ_WAKEUP))
		hurry_critical(p, tctx);
}

/* Carry out one of user space's decisions. */
static void dispatch_decision(const struct dispatched_task *d)
{
	struct task_struct *p;
	struct task_ctx *tctx;
	s32 cpu = d->cpu;
	u64 dsq;

	p = bpf_task_from_pid(d->pid);
	if (!p)
		return;

	tctx = lookup_task_ctx(p);
	if (!tctx || tctx->enq_cnt != d->enq_cnt) {
		/* the task was dequeued or re-enqueued since: a newer record follows */
		__sync_fetch_and_add(&nr_cancel_dispatches, 1);
		goto out;
	}
	tctx->vruntime = d->vruntime;

	if (cpu == PRISM_CPU_ANY) {
		dsq = SHARED_DSQ;
		cpu = scx_bpf_task_cpu(p);
	} else if (cpu < 0 || cpu >= MAX_CPUS || !bpf_cpumask_test_cpu(cpu, p->cpus_ptr)) {
		/* affinity changed under us: fall back to the shared queue */
		dsq = SHARED_DSQ;
		cpu = scx_bpf_task_cpu(p);
		__sync_fetch_and_add(&nr_bounce_dispatches, 1);
	} else {
		dsq = cpu_dsq(cpu);
	}
	scx_bpf_dsq_insert_vtime(p, dsq, d->slice_ns, d->dsq_vtime, d->flags);
	__sync_fetch_and_add(&nr_user_dispatches, 1);
	if (d->dsq_vtime > last_user_vtime)
		last_user_vtime = d->dsq_vtime;

	if (dsq == SHARED_DSQ) {
		if (!kick_idle_cpu(p, cpu))
			hurry_critical(p, tctx);
	} else if (preempt_lower && tctx->class == PRISM_CLASS_CRITICAL && runs_lower_class(cpu)) {
		kick_preempt(cpu, tctx->class);
	} else {
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
	}
out:
	bpf_task_release(p);
}

static long drain_one(struct bpf_dynptr *dynptr, void *ctx)
{
	const struct dispatched_task *d = bpf_dynptr_data(dynptr, 0, sizeof(*d));

	if (d)
		dispatch_decision(d);
	return !!scx_bpf_dispatch_nr_slots();
}

/*
 * A CPU needs work: apply user space's decisions, run the user scheduler if
 * it has something to decide, then take this CPU's queue, then the shared
 * one; with nothing else to run, let the previous task go on.
 */
void BPF_STRUCT_OPS(prism_dispatch, s32 cpu, struct task_struct *prev)
{
	struct cpu_ctx *cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});

	if (cctx)
		cctx->affine_chain = 0;
	bpf_user_ringbuf_drain(&dispatched, drain_one, NULL, BPF_RB_NO_WAKEUP);

	if (usersched_has_work() && scx_bpf_dsq_move_to_local(SCHED_DSQ, 0))
		return;
	if (scx_bpf_dsq_move_to_local(cpu_dsq(cpu), 0))
		return;
	if (scx_bpf_dsq_move_to_local(SHARED_DSQ, 0))
		return;
	if (prev && (prev->scx.flags & SCX_TASK_QUEUED) &&
	    (!is_usersched(prev) || usersched_has_work()))
		scx_bpf_task_set_slice(prev, slice_ns);
}

void BPF_STRUCT_OPS(prism_runnable, struct task_struct *p, u64 enq_flags)
{
	struct task_ctx *tctx;

	if (is_usersched(p) || !(tctx = lookup_task_ctx(p)))
		return;
	tctx->exec_runtime = 0;
	tctx->enq_ts = scx_bpf_now();
}

void BPF_STRUCT_OPS(prism_running, struct task_struct *p)
{
	struct task_ctx *tctx;
	struct cpu_ctx *cctx;

	if (is_usersched(p)) {
		usersched_last_run_at = scx_bpf_now();
		return;
	}
	__sync_fetch_and_add(&nr_running, 1);
	tctx = lookup_task_ctx(p);
	if (tctx) {
		tctx->start_ts = scx_bpf_now();
		tctx->stint_slice = p->scx.slice;
		if (tctx->enq_ts) {
			tctx->last_wait_ns = tctx->start_ts - tctx->enq_ts;
			tctx->last_wait_class = tctx->class;
			tctx->enq_ts = 0;
		}
	}
	cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	if (cctx) {
		cctx->class = tctx ? tctx->class : PRISM_CLASS_UNSET;
		cctx->started_at = scx_bpf_now();
		cctx->running = 1;
	}
}

void BPF_STRUCT_OPS(prism_stopping, struct task_struct *p, bool runnable)
{
	u64 now = scx_bpf_now(), ran;
	struct task_ctx *tctx;
	struct cpu_ctx *cctx;

	if (is_usersched(p))
		return;
	__sync_fetch_and_sub(&nr_running, 1);
	cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	tctx = lookup_task_ctx(p);
	ran = tctx ? now - tctx->start_ts : 0;
	if (cctx) {
		cctx->running = 0;
		if (tctx && runnable && cctx->preempting && tctx->stint_slice > ran + MIN_RESUME_NS)
			tctx->resume_slice = tctx->stint_slice - ran;
		cctx->preempting = 0;
	}
	if (!tctx)
		return;
	tctx->stop_ts = now;
	tctx->exec_runtime += ran;
	if (!runnable)
		tctx->last_burst_ns = tctx->exec_runtime;
	if (tctx->class < PRISM_NR_CLASSES)
		__sync_fetch_and_add(&class_runtime_ns[tctx->class], ran);
}

void BPF_STRUCT_OPS(prism_enable, struct task_struct *p)
{
	scx_bpf_task_set_dsq_vtime(p, 0);
	scx_bpf_task_set_slice(p, slice_ns);
}

s32 BPF_STRUCT_OPS(prism_init_task, struct task_struct *p, struct scx_init_task_args *args)
{
	if (!bpf_task_storage_get(&task_ctx_stor, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return -ENOMEM;
	/* the bus cache too, so enqueue never allocates */
	bpf_task_storage_get(&prism_task_cache, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	return 0;
}

s32 BPF_STRUCT_OPS(prism_cgroup_init, struct cgroup *cgrp, struct scx_cgroup_init_args *args)
{
	return prism_cgw_init(cgrp, args->weight);
}

void BPF_STRUCT_OPS(prism_cgroup_set_weight, struct cgroup *cgrp, u32 weight)
{
	prism_cgw_set(cgrp, weight);
}

static int heartbeat_fn(void *map, int *key, struct bpf_timer *timer)
{
	struct task_struct *p;

	if (scx_bpf_now() - usersched_last_run_at >= HEARTBEAT_NS) {
		p = bpf_task_from_pid(usersched_pid);
		if (p) {
			__sync_fetch_and_or(&usersched_needed, 1);
			scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_IDLE);
			bpf_task_release(p);
		}
	}
	if (bpf_timer_start(timer, HEARTBEAT_NS, 0))
		scx_bpf_error("cannot re-arm the heartbeat");
	return 0;
}

s32 BPF_STRUCT_OPS_SLEEPABLE(prism_init)
{
	const struct cpumask *online;
	struct bpf_timer *timer;
	s32 cpu, err;

	nr_cpu_ids = scx_bpf_nr_cpu_ids();
	online = scx_bpf_get_online_cpumask();
	nr_online_cpus = bpf_cpumask_weight(online);
	scx_bpf_put_cpumask(online);

	bpf_for(cpu, 0, nr_cpu_ids) {
		err = scx_bpf_create_dsq(cpu_dsq(cpu), -1);
		if (err)
			return err;
	}
	err = scx_bpf_create_dsq(SHARED_DSQ, -1);
	if (err)
		return err;
	err = scx_bpf_create_dsq(SCHED_DSQ, -1);
	if (err)
		return err;

	bpf_for(cpu, 0, nr_cpu_ids) {
		u32 key = cpu;
		struct preempt_timer *pt = bpf_map_lookup_elem(&preempt_timers, &key);

		if (!pt)
			break;
		bpf_timer_init(&pt->timer, &preempt_timers, CLOCK_BOOTTIME);
		bpf_timer_set_callback(&pt->timer, preempt_timer_fn);
	}

	timer = bpf_map_lookup_elem(&heartbeat_stor, &(u32){0});
	if (!timer)
		return -ESRCH;
	bpf_timer_init(timer, &heartbeat_stor, CLOCK_BOOTTIME);
	bpf_timer_set_callback(timer, heartbeat_fn);
	return bpf_timer_start(timer, HEARTBEAT_NS, 0);
}

void BPF_STRUCT_OPS(prism_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(prism_ops,
	       .select_cpu		= (void *)prism_select_cpu,
	       .enqueue			= (void *)prism_enqueue,
	       .dispatch		= (void *)prism_dispatch,
	       .runnable		= (void *)prism_runnable,
	       .running			= (void *)prism_running,
	       .stopping		= (void *)prism_stopping,
	       .enable			= (void *)prism_enable,
	       .init_task		= (void *)prism_init_task,
	       .cgroup_init		= (void *)prism_cgroup_init,
	       .cgroup_set_weight	= (void *)prism_cgroup_set_weight,
	       .init			= (void *)prism_init,
	       .exit			= (void *)prism_exit,
	       .timeout_ms		= 5000,
	       .dispatch_max_batch	= MAX_ENQUEUED_TASKS / 8,
	       .name			= "scx_prism");
