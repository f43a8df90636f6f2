/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * scx_prism: the BPF side of an identity-aware scheduler whose policy runs in
 * user space (the scx_rustland shape, with user space off the per-task path).
 *
 * BPF carries every task: it resolves the task's Prism class and weight
 * from the bus (prism/bus.bpf.h, through its per-task cache), and queues it
 * in its class's queue by the fair deadline (prism/fair_deadline.bpf.h) on
 * cgroup group shares (prism/cgroup_share.bpf.h). The classes are strict
 * tiers: a CPU takes critical work first, then normal (and unlabelled), then
 * batch. User space decides the policy over aggregated state and publishes
 * it here: every 50 ms it reads the CPU time each class used and, when
 * normal+batch fell below their minimum share (or batch below its share of
 * that), sets lower_classes_starving / batch_owed, which turn the order
 * around and stop critical wakeups from preempting. No task ever waits for
 * user space: a stopped policy loop leaves the last order in force.
 *
 * A task waking while a CPU is idle runs there at once. With none idle it
 * preempts a CPU running a lower class (critical: batch, else normal), or
 * same-class work that has run its minimum; for a lower class, and within
 * critical, it waits for that minimum with a timer, not for the tick. A
 * critical task woken by a critical waker that only runs briefly runs next
 * on the waker's CPU (wake-affine), a few times in a row at most. A task
 * that waited STARVE_NS is run next whatever its class (counted): the bound
 * that keeps every queued task within reach of a CPU, far below the
 * kernel's watchdog.
 */
#include <scx/common.bpf.h>
#include <bpf_experimental.h>
#include <prism/bus.bpf.h>
#include <prism/bus_resolve.bpf.h>
#include <prism/cgroup_share.bpf.h>
#include <prism/fair_deadline.bpf.h>
#include <prism/cgroup_bandwidth.bpf.h>
#include <prism/rcu_reader.bpf.h>
#include <prism/class_rank.bpf.h>
#include <prism/wait_hist.bpf.h>
#include "intf.h"

_Static_assert(PRISM_CLASS_SLOTS == PRISM_NR_CLASSES, "intf.h and class_rank.bpf.h disagree");

char _license[] SEC("license") = "GPL";

UEI_DEFINE(uei);

/*
 * DSQs, all ordered by deadline: per class queue (critical, normal, batch)
 * one per CPU for tasks that can run on that CPU only, and one shared.
 */
#define NR_QUEUES	3
#define SHARED_DSQ_BASE	(NR_QUEUES * MAX_CPUS)
/*
 * This scheduler's own threads, served before any class: the loop that
 * turns the class order around must run whatever order it set (critical
 * first would starve it behind critical hogs, lower classes first behind
 * normal ones, until the starvation bound).
 */
#define LOOP_DSQ	(SHARED_DSQ_BASE + NR_QUEUES)

#define CLOCK_BOOTTIME	7
/* a task that ran less than this before sleeping is interactive */
#define INTERACTIVE_BURST_NS	2500000ULL
/* a task queued this long runs next, whatever its class and deadline */
#define STARVE_NS	1000000000ULL
/* how often one CPU looks for such a task, and how far */
#define STARVE_CHECK_NS	(50ULL * 1000 * 1000)
#define STARVE_SCAN_MAX	512
/*
 * Wakees placed on one CPU's local queue since it last went through
 * ops.dispatch: a local task runs before dispatch is asked, so a ping-pong
 * pair handing the CPU back and forth would otherwise starve its queues.
 */
#define AFFINE_CHAIN_MAX 4

/* set by user space before load */
const volatile u32 usersched_pid;
const volatile u64 slice_ns = 5000000ULL;
const volatile u64 slice_min_ns = 500000ULL;
const volatile u64 slice_lag_ns = 20000000ULL;
const volatile u32 batch_slice_factor = 4;
const volatile bool preempt_lower = true;
/*
 * an interactive waker may preempt a same-class task that ran this long (and
 * a normal one a batch task); it waits for that, not for the tick
 */
const volatile u64 preempt_min_run_ns = 500000ULL;
/* a waker that runs less than this before it sleeps hands its CPU to its wakee (0: never) */
const volatile u64 affine_burst_ns = 500000ULL;

/* the policy, set by user space's loop */
volatile bool lower_classes_starving;	/* normal+batch below their minimum share */
volatile bool batch_owed;		/* batch below its share of normal+batch */

/* statistics, read by user space */
volatile u64 nr_running, nr_online_cpus;
volatile u64 nr_direct_dispatches, nr_queued_dispatches, nr_direct_critical,
	     nr_direct_preempt, nr_deferred_preempt, nr_affine, nr_rescued;
/* CPU time consumed per class, for the policy loop's share guard */
volatile u64 class_runtime_ns[PRISM_NR_CLASSES];

static u32 nr_cpu_ids;

struct task_ctx {
	struct prism_fair fair;	/* vruntime, weight, interactivity */
	struct prism_cg_task cg;	/* what it adds to its cgroup's share */
	struct prism_bw_task bw;	/* its cgroups' cpu.max */
	u64 own_weight;		/* within its cgroup: nice x bus weight, 100 = nice 0 */
	u64 start_ts;		/* when it last started running */
	u64 ready_at;		/* when it became ready to run, 0 while running */
	u32 class;		/* PRISM_CLASS_* at the last resolution */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctx_stor SEC(".maps");

/* what each CPU runs, to choose whom a waking task preempts */
struct cpu_ctx {
	u64 started_at;		/* when the current task started running */
	u64 burst_before;	/* what it had run since it last woke, before this stint */
	u64 deadline;		/* the current task's deadline */
	u32 class;
	u32 running;
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

static struct task_ctx *lookup_task_ctx(const struct task_struct *p)
{
	return bpf_task_storage_get(&task_ctx_stor, (struct task_struct *)p, 0, 0);
}

/* cgroup_bandwidth.bpf.h's part of the task context */
static struct prism_bw_task *prism_bw_task_of(struct task_struct *p)
{
	struct task_ctx *tctx = lookup_task_ctx(p);

	return tctx ? &tctx->bw : NULL;
}

static inline bool pinned(const struct task_struct *p)
{
	return p->nr_cpus_allowed == 1 || is_migration_disabled(p);
}

/* The class's queue: 0 critical, 1 normal and unlabelled, 2 batch. */
static u32 queue_of(u32 class)
{
	return 2 - prism_class_rank(class);
}

static u64 cpu_dsq(u32 q, s32 cpu)
{
	return (u64)(q % NR_QUEUES) * MAX_CPUS + ((u32)cpu & (MAX_CPUS - 1));
}

static u64 shared_dsq(u32 q)
{
	return SHARED_DSQ_BASE + q % NR_QUEUES;
}

static u64 nr_waiting(void)
{
	return scx_bpf_dsq_nr_queued(shared_dsq(0)) + scx_bpf_dsq_nr_queued(shared_dsq(1)) +
	       scx_bpf_dsq_nr_queued(shared_dsq(2));
}

/*
 * The class and bus weight: kernel threads bound to one CPU (ksoftirqd,
 * per-CPU workers) and this scheduler's own threads (its policy loop and
 * stats server) are critical, so no declared class outranks the kernel's
 * per-CPU housekeeping or the loop that guards the classes' shares.
 */
static u32 bus_lookup(struct task_struct *p, u32 *bus_weight)
{
	struct prism_task_info *info;
	u32 flags;

	*bus_weight = 0;
	if (((p->flags & PF_KTHREAD) && p->nr_cpus_allowed == 1) || p->tgid == usersched_pid)
		return PRISM_CLASS_CRITICAL;
	info = prism_resolve_counted(p);
	if (!info)
		return PRISM_CLASS_UNSET;
	flags = prism_sched_flags(info);
	*bus_weight = prism_weight(flags);
	return prism_known_class(flags);
}

/*
 * Refresh the task's class and weight: nice and the bus weight act within
 * its cgroup, as nice does under CFS; its cgroup's share of the machine
 * decides the rest. A class decides who runs first, never a cgroup's share.
 */
static void refresh_class(struct task_struct *p, struct task_ctx *tctx)
{
	u64 own = p->scx.weight;
	u32 bus_weight;

	tctx->class = bus_lookup(p, &bus_weight);
	if (bus_weight)
		own = own * bus_weight / PRISM_WEIGHT_NEUTRAL;
	tctx->own_weight = own ?: 1;
	tctx->fair.weight = prism_cg_task_weight(p, &tctx->cg, tctx->own_weight);
}

static u64 class_slice(u32 class)
{
	return class == PRISM_CLASS_BATCH ? slice_ns * batch_slice_factor : slice_ns;
}

/*
 * Refresh the task's class and weight, bound its credit (if it is @waking)
 * and its debt, and return its deadline.
 */
static u64 task_deadline(struct task_struct *p, struct task_ctx *tctx, bool waking)
{
	refresh_class(p, tctx);
	/* batch work asked for throughput, not wakeup latency: no interactive bonus */
	prism_fair_bound(&tctx->fair, waking, slice_lag_ns, tctx->class != PRISM_CLASS_BATCH,
			 class_slice(tctx->class), STARVE_NS / 2, nr_online_cpus);
	return prism_fair_deadline(&tctx->fair, 0, slice_lag_ns, nr_online_cpus);
}

/* Released from cpu.max: its weight counts in its cgroup again; it queues from the fair clock. */
static u64 prism_bw_on_release(struct task_struct *p, u64 held_vtime)
{
	struct task_ctx *tctx = lookup_task_ctx(p);

	if (!tctx)
		return held_vtime;
	prism_cg_count(p, &tctx->cg, tctx->own_weight ?: 100);
	prism_fair_released(&tctx->fair);
	/* its wait for the CPU starts now: the hold is cpu.max's, not the queue's */
	tctx->ready_at = scx_bpf_now();
	return task_deadline(p, tctx, false);
}

/*
 * Charge @p's run so far to its cgroups' cpu.max: may it go on? This
 * scheduler's own threads always may (the loop must run to keep policy).
 */
static bool within_budget(struct task_struct *p, struct task_ctx *tctx)
{
	return prism_bw_charge(p, &tctx->bw) || p->tgid == usersched_pid;
}

/* The slice shrinks as tasks wait for the CPUs (slice x CPUs / (CPUs + waiting)). */
static u64 task_slice(const struct task_ctx *tctx)
{
	u64 cpus = nr_online_cpus ?: 1, slice = slice_ns * cpus / (cpus + nr_waiting());

	if (slice < slice_min_ns)
		slice = slice_min_ns;
	if (tctx && tctx->class == PRISM_CLASS_BATCH)
		slice *= batch_slice_factor;
	return slice;
}

/*
 * Does the share guard's order hold critical wakeups back now? Only while
 * normal or batch work waits: the guard sees CPU time, not demand, and with
 * only critical work runnable it finds the lower classes "below their
 * share" (a critical-only load lost every preemption and wake-affine
 * placement so). Pinned waiters are not looked for: the starving order
 * still serves their queues first.
 */
static bool critical_held_back(void)
{
	return lower_classes_starving &&
	       (scx_bpf_dsq_nr_queued(shared_dsq(queue_of(PRISM_CLASS_NORMAL))) ||
		scx_bpf_dsq_nr_queued(shared_dsq(queue_of(PRISM_CLASS_BATCH))));
}

/*
 * The CPU a waking task should take when none is idle, or -1 to queue:
 *  - critical takes, at once, a CPU running the lowest class below it
 *    (batch first), unless normal+batch wait below their minimum share
 *    (critical_held_back);
 *  - normal (and unlabelled) takes a CPU running batch that has run
 *    preempt_min_run_ns;
 *  - critical and normal take the CPU the wakeup runs on (@at_wakeup) from
 *    same-class work with a later deadline (@dl) that has shown itself
 *    CPU-bound (run INTERACTIVE_BURST_NS since it last woke), and only if
 *    the wakee is interactive itself (EEVDF's wakeup preemption, but an
 *    interactive victim sleeps soon on its own, and preempting it only
 *    trades places: within a class the fair order decides);
 *  - batch preempts nobody.
 * With @wait_ns, a CPU whose task has not yet run its minimum may be the
 * answer when no other is (*wait_ns: how long it still has to run; the
 * caller arms a timer). A timer is an interrupt, dear under emulation, so
 * it is spent for a class above the victim's, and within critical, where
 * latency was asked for. Within normal work a wakeup takes only a CPU
 * already past its minimum, else it queues, as in scx_bpfland: a messaging
 * load of 160 unlabelled threads over pipes (hackbench's shape) armed some
 * 12,000 timers a second and took 0.78-1.25 s in one boot, up to 4.3 s in
 * others, against 0.70-0.82 s without (EEVDF: 1.26-1.96 s). There, with a
 * minimum run of preempt_min_run_ns alone, a woken receiver preempted its
 * sender mid-burst, read a few messages and slept: the more it did, the
 * fewer messages each read found and the more wakeups followed, so the load
 * ran in two regimes (0.8-1.5 s, or 1.8-2.8 s at half the batching; 12
 * interleaved trials in one boot: median 1.44 s, EEVDF 1.84); with the
 * CPU-bound test 2-5x fewer preemptions, median 0.93-0.97 s in two boots.
 * An unlabelled request probe under hogs, whose victims are CPU-bound,
 * keeps its p99 far below EEVDF's (391 us against 2121, median of 3).
 * Same-class work is preempted only where the wakeup runs: elsewhere it
 * costs an IPI, which under emulation is the dearest part of a preemption
 * (measured, empty bus, unlabelled probe under hogs, 5 trials in one boot:
 * p50/p99 348/897 us and hogs 1.68 CPUs local-only, 565/1763 us and 1.45
 * CPUs on any CPU). For a wakeup, the CPU it runs on goes first among
 * equals.
 */
static s32 preemption_victim(const struct task_struct *p, struct task_ctx *tctx, u64 dl,
			     bool at_wakeup, u64 *wait_ns)
{
	u32 rank = prism_class_rank(tctx->class), best = rank;
	bool interactive = tctx->fair.last_burst < INTERACTIVE_BURST_NS;
	u64 now = scx_bpf_now(), longest = 0, soonest = ~0ULL;
	s32 cpu, victim = -1, later = -1, this_cpu = at_wakeup ? bpf_get_smp_processor_id() : -1;

	if (rank == 0 || (rank == 2 && critical_held_back()))
		return -1;

	bpf_for(cpu, 0, nr_cpu_ids) {
		struct cpu_ctx *cctx;
		u64 ran, need;
		bool timed;
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
		if (r > rank || (r == rank && (cpu != this_cpu ||
						!prism_vtime_before(dl, cctx->deadline))))
			continue;
		need = (rank < 2 || r == rank) ? preempt_min_run_ns : 0;
		timed = r < rank;
		if (r == rank) {
			if (!interactive)
				continue;
			if (cctx->burst_before + need < INTERACTIVE_BURST_NS)
				need = INTERACTIVE_BURST_NS - cctx->burst_before;
			timed = tctx->class == PRISM_CLASS_CRITICAL;
		}
		if (ran < need) {
			/* protected for now: the one whose protection ends first */
			if (timed && need - ran <= soonest) {
				later = cpu;
				soonest = need - ran;
			}
			continue;
		}
		/* the lowest class first, then the CPU this wakeup runs on, then the longest-running */
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
		scx_bpf_kick_cpu(cpu, SCX_KICK_PREEMPT);
	return 0;
}

/*
 * A waking task with no CPU idle takes its victim's CPU, placed first in
 * that CPU's local queue: at once if the victim has had its minimum run,
 * else as soon as it has (a timer). The task it stops goes back to its
 * class's queue with its deadline.
 */
static bool preempt_for(struct task_struct *p, struct task_ctx *tctx, u64 slice, u64 enq_flags)
{
	u64 wait_ns = 0;
	s32 cpu = preemption_victim(p, tctx, p->scx.dsq_vtime, true, &wait_ns);

	if (cpu < 0)
		return false;
	/* at the head: ahead of a wakee already placed there (wake_affine) */
	scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL_ON | cpu, slice, enq_flags | SCX_ENQ_HEAD);
	if (wait_ns && defer_preempt(cpu, tctx->class, wait_ns)) {
		__sync_fetch_and_add(&nr_deferred_preempt, 1);
		return true;
	}
	scx_bpf_kick_cpu(cpu, SCX_KICK_PREEMPT);
	__sync_fetch_and_add(&nr_direct_preempt, 1);
	if (tctx->class == PRISM_CLASS_CRITICAL)
		__sync_fetch_and_add(&nr_direct_critical, 1);
	return true;
}

/*
 * A critical task queued with no CPU idle (a slice ended, or its wakeup
 * found no victim yet) must not wait for a lower class's slice to end
 * (batch slices are several base slices): preempt the CPU it would have
 * taken at wakeup; that CPU then takes it from its queue.
 */
static void hurry_critical(struct task_struct *p, struct task_ctx *tctx)
{
	s32 cpu;

	if (!preempt_lower || tctx->class != PRISM_CLASS_CRITICAL)
		return;
	cpu = preemption_victim(p, tctx, p->scx.dsq_vtime, false, NULL);
	if (cpu >= 0)
		scx_bpf_kick_cpu(cpu, SCX_KICK_PREEMPT);
}

static s32 pick_idle_cpu(struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	if (pinned(p))
		return scx_bpf_test_and_clear_cpu_idle(prev_cpu) ? prev_cpu : -EBUSY;

	if (!__COMPAT_HAS_scx_bpf_select_cpu_and) {
		bool is_idle = false;
		s32 cpu;

		if (!wake_flags)
			return scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
		cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
		return is_idle ? cpu : -EBUSY;
	}
	return scx_bpf_select_cpu_and(p, prev_cpu, wake_flags, p->cpus_ptr, 0);
}

/*
 * With no CPU idle, a critical waker that only runs briefly before it
 * sleeps (a dispatcher handing out work, an RPC hop) hands its CPU to the
 * critical task it wakes: placed first on the waker's CPU, the wakee runs
 * as soon as the waker sleeps, with no preemption and no IPI. It jumps the
 * fair order, so it is the latency class's alone, like the timed
 * preemption: for other work it cost more than it gave (a messaging load of
 * 160 unlabelled threads over pipes, hackbench's shape, 3 rounds of 3 runs
 * in one boot: 0.74-0.97 s with it, 0.59-0.67 s without but for one 1.04,
 * EEVDF 1.27-1.79 s). Not with anything already placed there, nor while
 * normal+batch wait below their share. The waker's slice is cut to the
 * burst it was expected to stay within, and a CPU takes at most
 * AFFINE_CHAIN_MAX such wakees in a row before its queues are served.
 */
static bool wake_affine(struct task_struct *p, struct task_ctx *tctx)
{
	struct task_struct *waker = bpf_get_current_task_btf();
	struct cpu_ctx *cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	s32 cpu = bpf_get_smp_processor_id();
	struct task_ctx *wctx;

	/*
	 * cctx->running: a task of ours runs here (ops.running sets it,
	 * ops.stopping clears it, also when an RT task takes the CPU), so
	 * current is it. A wakeup in irq context has no waker; the kernel does
	 * not mark timer wakeups so (measured), and the burst test below is
	 * what keeps an interrupted hog from counting.
	 */
	if (!bpf_in_task() || !cctx || !cctx->running || cctx->affine_chain >= AFFINE_CHAIN_MAX ||
	    (waker->flags & PF_KTHREAD) || !bpf_cpumask_test_cpu(cpu, p->cpus_ptr) ||
	    scx_bpf_dsq_nr_queued(SCX_DSQ_LOCAL))
		return false;
	wctx = lookup_task_ctx(waker);
	if (!wctx || !prism_fair_brief(&wctx->fair, wctx->start_ts, scx_bpf_now(), affine_burst_ns))
		return false;
	p->scx.dsq_vtime = task_deadline(p, tctx, true);
	if (tctx->class != PRISM_CLASS_CRITICAL || wctx->class != PRISM_CLASS_CRITICAL ||
	    critical_held_back())
		return false;
	scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, task_slice(tctx), 0);
	if (waker->scx.slice > affine_burst_ns)
		scx_bpf_task_set_slice(waker, affine_burst_ns);
	cctx->affine_chain++;
	__sync_fetch_and_add(&nr_affine, 1);
	return true;
}

/*
 * A waking task with an idle CPU runs there at once: nothing to decide. With
 * none idle, its waker's CPU may take it next (wake_affine); else ops.enqueue
 * queues it or preempts for it.
 */
s32 BPF_STRUCT_OPS(prism_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	struct task_ctx *tctx = lookup_task_ctx(p);
	s32 cpu;

	if (!bpf_cpumask_test_cpu(prev_cpu, p->cpus_ptr))
		prev_cpu = bpf_cpumask_first(p->cpus_ptr);
	/* out of cpu.max budget: ops.enqueue holds it */
	if (p->tgid != usersched_pid && prism_bw_throttled(p))
		return prev_cpu;
	cpu = pick_idle_cpu(p, prev_cpu, wake_flags);
	if (cpu >= 0) {
		if (tctx) {
			/* charge and bound it as if it had been queued */
			p->scx.dsq_vtime = task_deadline(p, tctx, true);
			if (tctx->class == PRISM_CLASS_CRITICAL)
				__sync_fetch_and_add(&nr_direct_critical, 1);
		}
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, task_slice(tctx), 0);
		__sync_fetch_and_add(&nr_direct_dispatches, 1);
		return cpu;
	}
	if (affine_burst_ns && (wake_flags & SCX_WAKE_TTWU) && tctx && wake_affine(p, tctx))
		return bpf_get_smp_processor_id();
	return prev_cpu;
}

/*
 * Queue a task by class and deadline; a wakeup with no CPU idle first looks
 * for a CPU to preempt. Tasks that can run on one CPU only wait in that
 * CPU's queue of their class.
 */
void BPF_STRUCT_OPS(prism_enqueue, struct task_struct *p, u64 enq_flags)
{
	s32 prev_cpu = scx_bpf_task_cpu(p), cpu;
	struct task_ctx *tctx = lookup_task_ctx(p);
	bool waking = enq_flags & SCX_ENQ_WAKEUP, rcu_reader;
	u64 dl, slice;
	u32 q;

	if (!tctx) {
		scx_bpf_dsq_insert_vtime(p, shared_dsq(1), slice_ns, prism_vtime_now, enq_flags);
		return;
	}
	if (p->tgid == usersched_pid) {
		scx_bpf_dsq_insert(p, LOOP_DSQ, slice_ns, enq_flags);
		/* an idle CPU takes it (its own may be an RT task's now: ops.cpu_release) */
		cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
		scx_bpf_kick_cpu(cpu >= 0 ? cpu : prev_cpu, SCX_KICK_IDLE);
		return;
	}
	dl = task_deadline(p, tctx, waking);
	slice = task_slice(tctx);
	/* a preempted RCU reader holds up RCU for everyone: one short stint soon */
	rcu_reader = prism_rcu_reader_stint(p, &dl, &slice, slice_min_ns);
	p->scx.dsq_vtime = dl;
	q = queue_of(tctx->class);

	if (!rcu_reader && prism_bw_hold(p, pinned(p) ? cpu_dsq(q, prev_cpu) : shared_dsq(q), dl,
					 slice, enq_flags)) {
		/* throttled: it does not compete until released */
		prism_cg_uncount(&tctx->cg);
		return;
	}

	if (pinned(p)) {
		scx_bpf_dsq_insert_vtime(p, cpu_dsq(q, prev_cpu), slice, dl, enq_flags);
		__sync_fetch_and_add(&nr_queued_dispatches, 1);
		scx_bpf_kick_cpu(prev_cpu, SCX_KICK_IDLE);
		return;
	}

	/* not woken through select_cpu (or its CPU got busy): look again */
	if (!__COMPAT_is_enq_cpu_selected(enq_flags)) {
		cpu = pick_idle_cpu(p, prev_cpu, 0);
		if (cpu >= 0) {
			scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL_ON | cpu, slice, enq_flags);
			__sync_fetch_and_add(&nr_direct_dispatches, 1);
			scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
			return;
		}
	}

	if (preempt_lower && waking && preempt_for(p, tctx, slice, enq_flags))
		return;
	scx_bpf_dsq_insert_vtime(p, shared_dsq(q), slice, dl, enq_flags);
	__sync_fetch_and_add(&nr_queued_dispatches, 1);
	/* a wakeup's victim search just ran in preempt_for: no second scan */
	if (!waking)
		hurry_critical(p, tctx);
}

static u64 starve_checked_at;

/*
 * The bound every queued task is held to: every STARVE_CHECK_NS one CPU
 * looks through the queues it serves, lowest class first, for a task that
 * has waited STARVE_NS and runs it next (a class starved by a higher one
 * whose share guard could not trip: the policy loop stopped, or its
 * budget was spent by critical work).
 */
static bool rescue_starving(s32 cpu)
{
	u64 now = scx_bpf_now(), last = starve_checked_at;
	struct task_struct *p;
	u32 i, n = 0;

	if (now - last < STARVE_CHECK_NS ||
	    __sync_val_compare_and_swap(&starve_checked_at, last, now) != last)
		return false;
	bpf_for(i, 0, 2 * NR_QUEUES) {
		u32 q = NR_QUEUES - 1 - i / 2;
		u64 dsq = i % 2 ? cpu_dsq(q, cpu) : shared_dsq(q);

		bpf_for_each(scx_dsq, p, dsq, 0) {
			struct task_ctx *tctx;

			if (++n > STARVE_SCAN_MAX)
				return false;
			tctx = lookup_task_ctx(p);
			if (!tctx || !tctx->ready_at || (s64)(now - tctx->ready_at) < (s64)STARVE_NS ||
			    !bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
				continue;
			if (scx_bpf_dsq_move(BPF_FOR_EACH_ITER, p, SCX_DSQ_LOCAL, 0)) {
				__sync_fetch_and_add(&nr_rescued, 1);
				return true;
			}
		}
	}
	return false;
}

/* Move the earlier deadline of this CPU's queue of class @q and the shared one to local. */
static bool take_earliest(s32 cpu, u32 q)
{
	struct task_struct *mine = __COMPAT_scx_bpf_dsq_peek(cpu_dsq(q, cpu));
	struct task_struct *shared = __COMPAT_scx_bpf_dsq_peek(shared_dsq(q));

	if (mine && (!shared || prism_vtime_before(mine->scx.dsq_vtime, shared->scx.dsq_vtime)) &&
	    scx_bpf_dsq_move_to_local(cpu_dsq(q, cpu), 0))
		return true;
	if (scx_bpf_dsq_move_to_local(shared_dsq(q), 0))
		return true;
	return scx_bpf_dsq_move_to_local(cpu_dsq(q, cpu), 0);
}

/*
 * The class queue of @prev if it is out of slice but still runnable (its
 * class refreshed: a relabel reaches a task that keeps its CPU too), else
 * NR_QUEUES.
 */
static u32 prev_queue(struct task_struct *prev, struct task_ctx **tctxp)
{
	struct task_ctx *tctx;

	if (!prev || !(prev->scx.flags & SCX_TASK_QUEUED) || !(tctx = lookup_task_ctx(prev)))
		return NR_QUEUES;
	refresh_class(prev, tctx);
	*tctxp = tctx;
	return queue_of(tctx->class);
}

/*
 * Should @prev go on rather than the head of its class's queues (@q)? Yes
 * if its deadline, charged for the run it is finishing, is still the
 * earliest: the fair order, not a turn each.
 */
static bool prev_goes_on(struct task_struct *prev, struct task_ctx *tctx, s32 cpu, u32 q)
{
	struct task_struct *mine, *shared;
	struct cpu_ctx *cctx;
	u64 dl;

	dl = prism_fair_deadline(&tctx->fair, scx_bpf_now() - tctx->start_ts, slice_lag_ns,
				 nr_online_cpus);
	mine = __COMPAT_scx_bpf_dsq_peek(cpu_dsq(q, cpu));
	shared = __COMPAT_scx_bpf_dsq_peek(shared_dsq(q));
	if ((mine && !prism_vtime_before(dl, mine->scx.dsq_vtime)) ||
	    (shared && !prism_vtime_before(dl, shared->scx.dsq_vtime)) || !within_budget(prev, tctx))
		return false;
	scx_bpf_task_set_slice(prev, task_slice(tctx));
	prism_bw_start(prev, &tctx->bw);
	cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	if (cctx) {
		cctx->deadline = dl;
		cctx->class = tctx->class;
	}
	return true;
}

/*
 * The class queue served @i-th: critical, normal, batch; while normal+batch
 * are below their minimum share, they come first (batch before normal
 * while batch is owed its part).
 */
static u32 queue_at(u32 i)
{
	u32 normal = batch_owed ? 2 : 1, batch = 3 - normal;

	if (lower_classes_starving)
		return i == 0 ? normal : i == 1 ? batch : 0;
	return i == 0 ? 0 : i == 1 ? normal : batch;
}

/*
 * A CPU needs work: this scheduler's own threads and a starving task first,
 * then the class queues in the order the policy loop set, the previous task
 * competing in its class; with nothing queued, the previous task goes on.
 */
void BPF_STRUCT_OPS(prism_dispatch, s32 cpu, struct task_struct *prev)
{
	struct cpu_ctx *cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	struct task_ctx *prev_tctx = NULL;
	u32 i, q, prev_q;

	if (cctx)
		cctx->affine_chain = 0;
	prism_bw_release();
	if (scx_bpf_dsq_move_to_local(LOOP_DSQ, 0) || rescue_starving(cpu))
		return;
	prev_q = prev_queue(prev, &prev_tctx);
	bpf_for(i, 0, NR_QUEUES) {
		q = queue_at(i);
		if (q == prev_q && prev_tctx && prev_goes_on(prev, prev_tctx, cpu, q))
			return;
		if (take_earliest(cpu, q))
			return;
	}
	/* nothing queued: the previous task goes on, within its cpu.max */
	if (prev_tctx && within_budget(prev, prev_tctx)) {
		scx_bpf_task_set_slice(prev, task_slice(prev_tctx));
		prism_bw_start(prev, &prev_tctx->bw);
	}
}

/* It became runnable: its weight counts in its cgroup's share, a new burst begins. */
void BPF_STRUCT_OPS(prism_runnable, struct task_struct *p, u64 enq_flags)
{
	struct task_ctx *tctx = lookup_task_ctx(p);
	u64 now = scx_bpf_now();

	if (!tctx)
		return;
	tctx->ready_at = now;
	prism_cg_count(p, &tctx->cg, tctx->own_weight ?: 100);
	prism_fair_woke(&tctx->fair, now);
}

/* It starts a stint: record its wait, and what this CPU runs for preemption choices. */
void BPF_STRUCT_OPS(prism_running, struct task_struct *p)
{
	struct task_ctx *tctx = lookup_task_ctx(p);
	struct cpu_ctx *cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	u64 now = scx_bpf_now();

	__sync_fetch_and_add(&nr_running, 1);
	if (tctx) {
		tctx->start_ts = now;
		prism_bw_start(p, &tctx->bw);
		if (tctx->ready_at) {
			prism_wait_record(tctx->class, tctx->ready_at, now);
			tctx->ready_at = 0;
		}
	}
	if (cctx) {
		cctx->class = tctx ? tctx->class : PRISM_CLASS_UNSET;
		cctx->burst_before = tctx ? tctx->fair.awake_runtime : 0;
		cctx->deadline = p->scx.dsq_vtime;
		cctx->started_at = now;
		cctx->running = 1;
	}
}

/* Its stint ends: charge it, and the class's CPU time the share guard reads. */
void BPF_STRUCT_OPS(prism_stopping, struct task_struct *p, bool runnable)
{
	struct task_ctx *tctx = lookup_task_ctx(p);
	struct cpu_ctx *cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	u64 now = scx_bpf_now(), ran;

	__sync_fetch_and_sub(&nr_running, 1);
	if (cctx)
		cctx->running = 0;
	if (!tctx)
		return;
	ran = now - tctx->start_ts;
	prism_fair_charge(&tctx->fair, ran, !runnable);
	prism_bw_charge(p, &tctx->bw);
	if (runnable)
		tctx->ready_at = now;	/* preempted or out of slice: waits again */
	/* the policy loop is critical so that it always runs, but its time is not the class's */
	if (p->tgid != usersched_pid)
		__sync_fetch_and_add(&class_runtime_ns[tctx->class & (PRISM_NR_CLASSES - 1)], ran);
}

/* Its weight leaves its cgroup's share and the fair clock's total. */
static void uncount_weight(struct task_struct *p)
{
	struct task_ctx *tctx = lookup_task_ctx(p);

	if (tctx)
		prism_cg_uncount(&tctx->cg);
}

/* It sleeps: no longer runnable, no longer counted. */
void BPF_STRUCT_OPS(prism_quiescent, struct task_struct *p, u64 deq_flags)
{
	uncount_weight(p);
}

/* Leaving sched_ext (or exiting) while runnable: no longer counted. */
void BPF_STRUCT_OPS(prism_disable, struct task_struct *p)
{
	uncount_weight(p);
}

/* It enters sched_ext: it starts at the fair clock. */
void BPF_STRUCT_OPS(prism_enable, struct task_struct *p)
{
	struct task_ctx *tctx = lookup_task_ctx(p);

	if (tctx) {
		prism_fair_start(&tctx->fair, scx_bpf_now());
		tctx->own_weight = 100;
	}
	p->scx.dsq_vtime = prism_vtime_now;
}

/* Its context and bus cache, allocated here so that enqueue never allocates. */
s32 BPF_STRUCT_OPS(prism_init_task, struct task_struct *p, struct scx_init_task_args *args)
{
	if (!bpf_task_storage_get(&task_ctx_stor, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return -ENOMEM;
	bpf_task_storage_get(&prism_task_cache, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	return 0;
}

/* A cgroup appears (or exists at load): its cpu.weight under its parent, its cpu.max. */
s32 BPF_STRUCT_OPS(prism_cgroup_init, struct cgroup *cgrp, struct scx_cgroup_init_args *args)
{
	if (bpf_core_field_exists(args->bw_quota_us))
		prism_bw_set(cgrp, args->bw_period_us, args->bw_quota_us, args->bw_burst_us);
	return prism_cg_init(cgrp, args->weight);
}

/* A cgroup goes away: its share and limit state with it. */
void BPF_STRUCT_OPS(prism_cgroup_exit, struct cgroup *cgrp)
{
	prism_bw_exit(cgrp);
	prism_cg_exit(cgrp);
}

/* cpu.max (or cpu.max.burst) written: the cgroup's limit from now. */
void BPF_STRUCT_OPS(prism_cgroup_set_bandwidth, struct cgroup *cgrp, u64 period_us, u64 quota_us,
		    u64 burst_us)
{
	prism_bw_set(cgrp, period_us, quota_us, burst_us);
}

/* A task moves to another cgroup: its weight counts there from now. */
void BPF_STRUCT_OPS(prism_cgroup_move, struct task_struct *p, struct cgroup *from,
		    struct cgroup *to)
{
	struct task_ctx *tctx = lookup_task_ctx(p);

	if (tctx)
		prism_cg_move(&tctx->cg, to);
}

/* cpu.weight written: the cgroup's share among its siblings changes. */
void BPF_STRUCT_OPS(prism_cgroup_set_weight, struct cgroup *cgrp, u32 weight)
{
	prism_cg_set_weight(cgrp, weight);
}

/* The queues, the per-CPU preemption timers, and cpu.max's queue and timer. */
s32 BPF_STRUCT_OPS_SLEEPABLE(prism_init)
{
	const struct cpumask *online;
	s32 cpu, err;
	u32 q;

	nr_cpu_ids = scx_bpf_nr_cpu_ids();
	online = scx_bpf_get_online_cpumask();
	nr_online_cpus = bpf_cpumask_weight(online);
	scx_bpf_put_cpumask(online);

	err = scx_bpf_create_dsq(LOOP_DSQ, -1);
	if (err)
		return err;
	bpf_for(q, 0, NR_QUEUES) {
		err = scx_bpf_create_dsq(shared_dsq(q), -1);
		if (err)
			return err;
		bpf_for(cpu, 0, nr_cpu_ids) {
			if (cpu >= MAX_CPUS)
				break;
			err = scx_bpf_create_dsq(cpu_dsq(q, cpu), -1);
			if (err)
				return err;
		}
	}

	bpf_for(cpu, 0, nr_cpu_ids) {
		u32 key = cpu;
		struct preempt_timer *pt = bpf_map_lookup_elem(&preempt_timers, &key);

		if (!pt)
			break;
		bpf_timer_init(&pt->timer, &preempt_timers, CLOCK_BOOTTIME);
		bpf_timer_set_callback(&pt->timer, preempt_timer_fn);
	}
	return prism_bw_init();
}

/*
 * CPU hotplug. Having these callbacks is what keeps the scheduler loaded:
 * without them the kernel unloads it at every CPU going on or offline and
 * asks user space to load it again (19-20 s of verification under TCG).
 * Nothing else needs them: the idle mask and the kernel's migration of a
 * dying CPU's tasks cover placement; slices and deadlines scale with the
 * CPUs online, and a CPU away is nobody's preemption victim.
 */
void BPF_STRUCT_OPS(prism_cpu_online, s32 cpu)
{
	__sync_fetch_and_add(&nr_online_cpus, 1);
}

/* A CPU goes offline: one fewer to size slices by (why both exist: above). */
void BPF_STRUCT_OPS(prism_cpu_offline, s32 cpu)
{
	struct cpu_ctx *cctx = bpf_map_lookup_percpu_elem(&cpu_ctx_stor, &(u32){0}, cpu);

	if (cctx)
		cctx->running = 0;
	__sync_fetch_and_sub(&nr_online_cpus, 1);
}

/*
 * A higher class (a SCHED_FIFO task, deadline, stop) took @cpu: what waits in
 * its local queue would wait out that class's whole run (an RT hog's is
 * seconds). Back through ops.enqueue with them, to an idle CPU or the shared
 * queues another CPU serves; a task pinned here returns to this CPU's queue.
 */
void BPF_STRUCT_OPS(prism_cpu_release, s32 cpu, struct scx_cpu_release_args *args)
{
	scx_bpf_reenqueue_local();
}

/* Unloaded or ejected: say why, for user space to report. */
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
	       .quiescent		= (void *)prism_quiescent,
	       .enable			= (void *)prism_enable,
	       .disable			= (void *)prism_disable,
	       .init_task		= (void *)prism_init_task,
	       .cgroup_init		= (void *)prism_cgroup_init,
	       .cgroup_exit		= (void *)prism_cgroup_exit,
	       .cgroup_move		= (void *)prism_cgroup_move,
	       .cgroup_set_weight	= (void *)prism_cgroup_set_weight,
	       .cgroup_set_bandwidth	= (void *)prism_cgroup_set_bandwidth,
	       .cpu_online		= (void *)prism_cpu_online,
	       .cpu_offline		= (void *)prism_cpu_offline,
	       .cpu_release		= (void *)prism_cpu_release,
	       .init			= (void *)prism_init,
	       .exit			= (void *)prism_exit,
	       .timeout_ms		= 5000,
	       .name			= "scx_prism");
