/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * scx_prism_bpfland: the whole scheduling policy in BPF, in the style of
 * scx_bpfland (written for Prism).
 *
 * Tasks are queued by the fair deadline (prism/fair_deadline.bpf.h: vruntime
 * plus the weighted CPU time since the task woke, with a bounded sleep
 * credit and debt). The weight is the task's part of its cgroup's
 * hierarchical cpu.weight share (prism/cgroup_share.bpf.h: group shares as
 * CFS gives them, whatever the thread counts), split within the cgroup by
 * nice and, with --prism, the bus weight and class.
 *
 * Queues: one deadline-ordered DSQ per LLC, one per CPU for tasks that can
 * run on that CPU only, and with --prism one per LLC for owed critical
 * tasks. Idle CPUs are chosen by topology: the previous CPU
 * if its whole SMT core is idle, then a fully idle core in the same LLC, the
 * same node, anywhere; then any idle CPU in that order. Slices shrink as the
 * LLC's queue grows. A waking task whose deadline is earlier than that of
 * the task on the CPU it wakes on preempts it once that has run a while
 * (on other CPUs too with preempt_same_class: that costs an IPI).
 *
 * With --prism, the bus (prism/bus.bpf.h, through its per-task cache: no
 * hash lookup in steady state) gives each task a latency class and weight:
 *  - critical: critical_weight_factor times the weight (so it gets the CPU
 *    it asks for, up to that multiple of a fair share), deadline
 *    class_offset earlier, and when it wakes it preempts batch or normal
 *    work with a later deadline at once; while it is owed CPU (vruntime not
 *    ahead of the fair clock) it queues in its LLC's owed-critical queue,
 *    served before the deadline queue, and its wakeups preempt lower
 *    classes whatever their deadline (however many light tasks are queued);
 *  - batch: no interactive bonus on its credit, deadline class_offset later,
 *    batch_slice_factor longer slices, and it preempts nobody;
 *  - weight 1..127 multiplies the task's weight by weight/64.
 * The offsets are constants and vruntime is always charged, so a CPU-bound
 * critical task leads the others by a bounded amount of virtual time and
 * then shares by weight: no class can starve another (N critical hogs leave
 * a normal one at least 1/(N * critical_weight_factor + 1) of the CPUs).
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

char _license[] SEC("license") = "GPL";

UEI_DEFINE(uei);

/* DSQ ids: CPUs 0..MAX_CPUS-1, then the LLCs, then each LLC's owed-critical queue */
#define LLC_DSQ_BASE	MAX_CPUS
#define OWED_DSQ_BASE	(LLC_DSQ_BASE + MAX_LLCS)

/*
 * A queued task that waited this long runs next, whatever its deadline:
 * far below the sched_ext watchdog's 5 s, far above any wait a deadline
 * gives on its own.
 */
#define STARVE_NS	(1000ULL * 1000 * 1000)

/* critical wakees a CPU takes from its wakers in a row before its queues are served */
#define AFFINE_CHAIN_MAX	4

/* set by user space before load */
const volatile u64 slice_max_ns = 5000000ULL;
const volatile u64 slice_min_ns = 500000ULL;
const volatile u64 slice_lag_ns = 20000000ULL;
const volatile u64 preempt_min_ns = 500000ULL;
const volatile bool preempt_same_class;
const volatile u64 class_offset_ns = 20000000ULL;
const volatile u32 batch_slice_factor = 4;
const volatile u32 critical_weight_factor = 4;
const volatile u64 affine_burst_ns = 500000ULL;
const volatile bool prism_enabled;
const volatile bool smt_enabled;
const volatile u32 nr_llcs = 1;
const volatile u32 nr_cpus = 1;	/* online, from the topology */
const volatile u32 cpu_llc[MAX_CPUS];
const volatile u32 cpu_node[MAX_CPUS];
const volatile u32 llc_nr_cpus[MAX_LLCS];

/* statistics, read by user space */
volatile u64 nr_direct_dispatches;	/* placed on an idle CPU at once */
volatile u64 nr_queued_dispatches;	/* went through a DSQ */
volatile u64 nr_preemptions;
volatile u64 nr_steals;			/* taken from another LLC's queue */
volatile u64 nr_rescued;		/* waited STARVE_NS: run next */
volatile u64 nr_owed_critical;		/* critical tasks owed CPU, queued first */
volatile u64 nr_affine;			/* critical wakees handed their waker's CPU */
volatile u64 nr_runs[PRISM_NR_CLASSES];
volatile u64 class_runtime_ns[PRISM_NR_CLASSES];

static u32 nr_cpu_ids;

struct task_ctx {
	struct prism_fair fair;	/* vruntime, weight, interactivity */
	u64 last_run_at;
	u64 ready_at;		/* when it became ready to run, 0 while running */
	u64 own_weight;		/* within its cgroup: nice x bus weight x class, 100 = nice 0 */
	struct prism_cg_task cg;	/* what it adds to its cgroup's share */
	struct prism_bw_task bw;	/* its cgroup's cpu.max */
	u32 class;		/* PRISM_CLASS_*, UNSET without --prism */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctx_stor SEC(".maps");

/* what runs on each CPU, to choose whom a waking task preempts */
struct cpu_ctx {
	u64 started_at;
	u64 deadline;
	u32 class;
	u32 running;
	u32 affine_chain;	/* wakees handed this CPU by their wakers since the last dispatch */
	struct bpf_cpumask __kptr *scratch;	/* for mask intersections */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct cpu_ctx);
} cpu_ctx_stor SEC(".maps");

struct domain {
	struct bpf_cpumask __kptr *cpus;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_LLCS);
	__type(key, u32);
	__type(value, struct domain);
} llc_domains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_NODES);
	__type(key, u32);
	__type(value, struct domain);
} node_domains SEC(".maps");

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


/*
 * Indexes are masked rather than checked: clang drops a mask after a check,
 * and the verifier then cannot see the bound. CPU ids are below MAX_CPUS.
 */
static u32 llc_of(s32 cpu)
{
	return cpu_llc[(u32)cpu & (MAX_CPUS - 1)] & (MAX_LLCS - 1);
}

static u32 node_of(s32 cpu)
{
	return cpu_node[(u32)cpu & (MAX_CPUS - 1)] & (MAX_NODES - 1);
}

static u64 llc_dsq(s32 cpu)
{
	return LLC_DSQ_BASE + llc_of(cpu);
}

static u64 owed_dsq(s32 cpu)
{
	return OWED_DSQ_BASE + llc_of(cpu);
}

static u64 cpu_dsq(s32 cpu)
{
	return cpu >= 0 && cpu < MAX_CPUS ? (u64)cpu : LLC_DSQ_BASE;
}

static const struct cpumask *domain_mask(void *domains, u32 idx)
{
	struct domain *d = bpf_map_lookup_elem(domains, &idx);

	return d ? cast_mask(d->cpus) : NULL;
}

static inline bool pinned(const struct task_struct *p)
{
	return p->nr_cpus_allowed == 1 || is_migration_disabled(p);
}

/* The task's class and bus weight, through the bus's per-task cache. */
static u32 bus_lookup(struct task_struct *p, u32 *bus_weight)
{
	struct prism_task_info *info;
	u32 flags;

	*bus_weight = 0;
	if (!prism_enabled)
		return PRISM_CLASS_UNSET;
	/*
	 * Kernel threads (RCU grace periods, reclaim, writeback) keep pace with
	 * the most urgent user work: no declared class outranks the kernel's
	 * housekeeping (critical stress work starving them stalled RCU).
	 */
	if (p->flags & PF_KTHREAD)
		return PRISM_CLASS_CRITICAL;
	info = prism_resolve_counted(p);
	if (!info)
		return PRISM_CLASS_UNSET;
	flags = prism_sched_flags(info);
	*bus_weight = prism_weight(flags);
	return prism_known_class(flags);
}

/*
 * The task's deadline once it has run @extra_ns more: the fair deadline,
 * moved by its class.
 */
static u64 deadline_after(const struct task_ctx *tctx, u64 extra_ns)
{
	u64 dl = prism_fair_deadline(&tctx->fair, extra_ns, slice_lag_ns, nr_cpus);

	if (tctx->class == PRISM_CLASS_CRITICAL)
		dl -= prism_wall_to_vtime(class_offset_ns, nr_cpus);
	else if (tctx->class == PRISM_CLASS_BATCH)
		dl += prism_wall_to_vtime(class_offset_ns, nr_cpus);
	return dl;
}

/*
 * Refresh the task's class and weight: its own weight (nice, and with
 * --prism the bus weight and class) acts within its cgroup, as nice does
 * under CFS; its cgroup's share of the machine decides the rest. A class
 * decides who runs first, never a cgroup's share.
 */
static void refresh_weight(struct task_struct *p, struct task_ctx *tctx)
{
	u64 own = p->scx.weight;
	u32 bus_weight;

	tctx->class = bus_lookup(p, &bus_weight);
	if (bus_weight)
		own = own * bus_weight / PRISM_WEIGHT_NEUTRAL;
	if (tctx->class == PRISM_CLASS_CRITICAL)
		own *= critical_weight_factor;
	tctx->own_weight = own ?: 1;
	tctx->fair.weight = prism_cg_task_weight(p, &tctx->cg, tctx->own_weight);
}

/*
 * Refresh the task's class and weight, bound its debt and, if it is
 * @waking, its sleep credit (a task that was runnable all along is owed
 * what it is behind), and return its deadline.
 */
static u64 task_deadline(struct task_struct *p, struct task_ctx *tctx, bool waking)
{
	u64 slice = slice_max_ns * (tctx->class == PRISM_CLASS_BATCH ? batch_slice_factor : 1);

	refresh_weight(p, tctx);
	/*
	 * batch work asked for throughput, not wakeup latency: no interactive
	 * bonus; a debt of at most half the starvation bound
	 */
	prism_fair_bound(&tctx->fair, waking, slice_lag_ns, tctx->class != PRISM_CLASS_BATCH, slice,
			 STARVE_NS / 2, nr_cpus);
	return deadline_after(tctx, 0);
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

/* The slice shrinks as the LLC's queue grows beyond its CPUs. */
static u64 task_slice(const struct task_struct *p, const struct task_ctx *tctx, s32 cpu)
{
	u32 llc = llc_of(cpu), cpus = llc_nr_cpus[llc] ?: 1;
	u64 queued = scx_bpf_dsq_nr_queued(LLC_DSQ_BASE + llc);
	u64 slice = slice_max_ns * cpus / (cpus + queued);

	if (slice < slice_min_ns)
		slice = slice_min_ns;
	if (tctx && tctx->class == PRISM_CLASS_BATCH)
		slice *= batch_slice_factor;
	return slice;
}

static s32 pick_idle_in(const struct cpumask *allowed, struct bpf_cpumask *scratch,
			const struct cpumask *domain, u64 flags)
{
	if (!domain || !scratch)
		return -EBUSY;
	bpf_cpumask_and(scratch, allowed, domain);
	return scx_bpf_pick_idle_cpu(cast_mask(scratch), flags);
}

/*
 * An idle CPU for @p, nearest first: @prev_cpu's whole core, an idle core
 * in its LLC, its node, anywhere; then any idle CPU in the same order.
 */
static s32 pick_idle_cpu(struct task_struct *p, s32 prev_cpu)
{
	const struct cpumask *llc, *node, *idle_smt;
	struct bpf_cpumask *scratch;
	struct cpu_ctx *cctx;
	s32 cpu = -EBUSY;

	if (pinned(p))
		return scx_bpf_test_and_clear_cpu_idle(prev_cpu) ? prev_cpu : -EBUSY;

	cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	if (!cctx)
		return -EBUSY;
	scratch = cctx->scratch;
	llc = domain_mask(&llc_domains, llc_of(prev_cpu));
	node = domain_mask(&node_domains, node_of(prev_cpu));

	if (smt_enabled) {
		idle_smt = scx_bpf_get_idle_smtmask();
		if (bpf_cpumask_test_cpu(prev_cpu, idle_smt) &&
		    scx_bpf_test_and_clear_cpu_idle(prev_cpu))
			cpu = prev_cpu;
		scx_bpf_put_idle_cpumask(idle_smt);
		if (cpu >= 0)
			return cpu;
		cpu = pick_idle_in(p->cpus_ptr, scratch, llc, SCX_PICK_IDLE_CORE);
		if (cpu >= 0)
			return cpu;
		cpu = pick_idle_in(p->cpus_ptr, scratch, node, SCX_PICK_IDLE_CORE);
		if (cpu >= 0)
			return cpu;
		cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, SCX_PICK_IDLE_CORE);
		if (cpu >= 0)
			return cpu;
	}
	if (scx_bpf_test_and_clear_cpu_idle(prev_cpu))
		return prev_cpu;
	cpu = pick_idle_in(p->cpus_ptr, scratch, llc, 0);
	if (cpu >= 0)
		return cpu;
	cpu = pick_idle_in(p->cpus_ptr, scratch, node, 0);
	if (cpu >= 0)
		return cpu;
	return scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
}

/*
 * A CPU of @p's LLC to preempt for @p, waking with deadline @dl, or -1.
 * The victim always has a later deadline than @dl, so preemption never
 * beats the fair order, unless @p is @owed (an owed critical wakeup, which
 * goes before the LLC's whole deadline queue) and the victim's class is
 * lower. Critical takes a lower class's CPU at once; a
 * normal (or unlabelled) task takes batch's, or, from the CPU it wakes on,
 * same-class work, once that has run preempt_min_ns. Kicking another CPU
 * costs an IPI, so the waking CPU is the first choice and same-class
 * victims elsewhere are taken only with preempt_same_class. Batch preempts
 * nobody.
 */
static s32 preemption_victim(const struct task_struct *p, const struct task_ctx *tctx,
			     u64 dl, bool owed, s32 prev_cpu)
{
	u32 rank = prism_class_rank(tctx->class), llc = llc_of(prev_cpu), best_rank = 3;
	s32 this_cpu = bpf_get_smp_processor_id(), cpu, victim = -1;
	u64 now = scx_bpf_now(), latest = dl;

	if (rank == 0)
		return -1;
	bpf_for(cpu, 0, nr_cpu_ids) {
		struct cpu_ctx *cctx;
		bool local = cpu == this_cpu;
		u32 r;

		if (cpu >= MAX_CPUS)
			break;
		if (llc_of(cpu) != llc || !bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
			continue;
		cctx = bpf_map_lookup_percpu_elem(&cpu_ctx_stor, &(u32){0}, cpu);
		if (!cctx || !cctx->running)
			continue;
		r = prism_class_rank(cctx->class);
		if (r > rank || (r == rank && !local && !preempt_same_class) ||
		    (!prism_vtime_before(dl, cctx->deadline) && !(owed && r < rank)))
			continue;
		if (!(rank == 2 && r < rank) && (s64)(now - cctx->started_at) < (s64)preempt_min_ns)
			continue;
		if (local)
			return cpu;
		if (r < best_rank || (r == best_rank && prism_vtime_before(latest, cctx->deadline))) {
			victim = cpu;
			best_rank = r;
			latest = cctx->deadline;
		}
	}
	return victim;
}

/*
 * With --prism and no CPU idle, a critical waker that runs only briefly
 * before it sleeps (an RPC hop, a dispatcher handing out work) hands its
 * CPU to the critical task it wakes: placed first on the waker's CPU, the
 * wakee runs as soon as the waker sleeps, with no preemption of another
 * CPU and no IPI. Without it each such wakeup preempted a batch task on
 * the other CPU, and the waker's CPU, a moment later, had only batch work
 * left: a chain of services took 2.2x the rescheduling IPIs (measured in
 * the lab, its latency the same either way). It jumps the fair order, so
 * it is the latency class's alone (scx_prism's measure: for unlabelled
 * messaging it cost more than it gave). Not behind anything but earlier
 * hand-offs already placed here: a unix socket's reader frees what its
 * writer sent and so wakes the writer, asleep for the reply, for nothing;
 * that wakee, handed off, then turned the hop's real wakeup away in 29% of
 * all critical wakeups, each an IPI. The waker's slice is cut to the
 * burst it was expected to stay within, and a CPU takes at most
 * AFFINE_CHAIN_MAX such wakees in a row before its queues are served.
 */
static bool wake_affine(struct task_struct *p, struct task_ctx *tctx)
{
	struct task_struct *waker = bpf_get_current_task_btf();
	struct cpu_ctx *cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	s32 cpu = bpf_get_smp_processor_id();
	struct task_ctx *wctx;
	u64 dl;

	/*
	 * cctx->running: a task of ours runs here, so current is it. A wakeup
	 * in irq context has no waker; the burst test keeps an interrupted
	 * hog from counting as one. Kernel threads rank as critical, but no
	 * label asked for their latency: neither side of a hand-off.
	 */
	if (!affine_burst_ns || !prism_enabled || !bpf_in_task() || !cctx || !cctx->running ||
	    cctx->affine_chain >= AFFINE_CHAIN_MAX || ((waker->flags | p->flags) & PF_KTHREAD) ||
	    !bpf_cpumask_test_cpu(cpu, p->cpus_ptr) ||
	    scx_bpf_dsq_nr_queued(SCX_DSQ_LOCAL) > cctx->affine_chain)
		return false;
	wctx = lookup_task_ctx(waker);
	if (!wctx || wctx->class != PRISM_CLASS_CRITICAL || tctx->class != PRISM_CLASS_CRITICAL ||
	    !prism_fair_brief(&wctx->fair, wctx->last_run_at, scx_bpf_now(), affine_burst_ns))
		return false;
	dl = task_deadline(p, tctx, true);
	if (tctx->class != PRISM_CLASS_CRITICAL)
		return false;
	p->scx.dsq_vtime = dl;
	scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, task_slice(p, tctx, cpu), 0);
	if (waker->scx.slice > affine_burst_ns)
		scx_bpf_task_set_slice(waker, affine_burst_ns);
	cctx->affine_chain++;
	__sync_fetch_and_add(&nr_affine, 1);
	return true;
}

/*
 * A task wakes: an idle CPU found now (the topology order in
 * pick_idle_cpu) runs it at once, with no queue and no IPI; with none
 * idle, a critical wakee may take its waker's CPU next (wake_affine);
 * else ops.enqueue queues it by deadline and picks whom it preempts.
 */
s32 BPF_STRUCT_OPS(pbl_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	struct task_ctx *tctx = lookup_task_ctx(p);
	s32 cpu;

	if (!bpf_cpumask_test_cpu(prev_cpu, p->cpus_ptr))
		prev_cpu = bpf_cpumask_first(p->cpus_ptr);
	/* out of cpu.max budget: ops.enqueue holds it */
	if (prism_bw_throttled(p))
		return prev_cpu;
	cpu = pick_idle_cpu(p, prev_cpu);
	if (cpu < 0) {
		if ((wake_flags & SCX_WAKE_TTWU) && tctx && wake_affine(p, tctx))
			return bpf_get_smp_processor_id();
		return prev_cpu;
	}
	if (tctx) {
		/* charge and bound it as if it had been queued */
		p->scx.dsq_vtime = task_deadline(p, tctx, true);
	}
	scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, task_slice(p, tctx, cpu), 0);
	__sync_fetch_and_add(&nr_direct_dispatches, 1);
	return cpu;
}

/*
 * Does @tctx go to its LLC's owed-critical queue? A critical task that is
 * owed CPU (its vruntime not ahead of the fair clock: EEVDF's eligibility,
 * which holds while it uses no more than its share) runs before the LLC's
 * deadline queue. The class offset cannot do that at depth: it is wall
 * time converted at the fair clock's speed, which thousands of light queued
 * tasks slow to a crawl, while their vruntimes spread over one run each, a
 * second of wall time and more; half of 2,000 batch threads were ahead of
 * a waking critical task (waits of 1.6 s). That holds for a critical task
 * whose slice ran out too (it waited behind the pack up to 0.94 s when only
 * wakeups went). A CPU-bound critical task over its share is not owed: it
 * is charged as ever and shares by weight.
 */
static bool owed_critical(const struct task_ctx *tctx)
{
	return tctx->class == PRISM_CLASS_CRITICAL &&
	       !prism_vtime_before(prism_vtime_now, tctx->fair.vruntime);
}

/*
 * A task is ready and found no idle CPU on its way in: it is held if its
 * cgroup is out of cpu.max budget, else queued by its fair deadline where
 * it may run (its CPU's queue if pinned, its LLC's otherwise, the owed-
 * critical queue for an owed critical task), and a waking task may
 * preempt a CPU running later work, so it need not wait for a slice to end.
 */
void BPF_STRUCT_OPS(pbl_enqueue, struct task_struct *p, u64 enq_flags)
{
	s32 prev_cpu = scx_bpf_task_cpu(p), cpu;
	struct task_ctx *tctx = lookup_task_ctx(p);
	u64 dl = prism_vtime_now, slice;
	bool rcu_reader, owed;

	if (tctx)
		dl = task_deadline(p, tctx, enq_flags & SCX_ENQ_WAKEUP);
	slice = task_slice(p, tctx, prev_cpu);
	/* a preempted RCU reader holds up RCU for everyone: one short stint soon */
	rcu_reader = prism_rcu_reader_stint(p, &dl, &slice, slice_min_ns);

	if (tctx && !rcu_reader && prism_bw_hold(p, pinned(p) ? cpu_dsq(prev_cpu) : llc_dsq(prev_cpu), dl, slice,
				  enq_flags)) {
		/* throttled: it does not compete until released */
		prism_cg_uncount(&tctx->cg);
		return;
	}

	/* the last task of this CPU, within its budget: it goes on */
	if (enq_flags & SCX_ENQ_LAST) {
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice, enq_flags);
		return;
	}

	if (pinned(p)) {
		scx_bpf_dsq_insert_vtime(p, cpu_dsq(prev_cpu), slice, dl, enq_flags);
		__sync_fetch_and_add(&nr_queued_dispatches, 1);
		scx_bpf_kick_cpu(prev_cpu, SCX_KICK_IDLE);
		return;
	}

	/* not woken through select_cpu (or its CPU got busy): look again */
	if (!__COMPAT_is_enq_cpu_selected(enq_flags)) {
		cpu = pick_idle_cpu(p, prev_cpu);
		if (cpu >= 0) {
			scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL_ON | cpu, task_slice(p, tctx, cpu),
					   enq_flags);
			__sync_fetch_and_add(&nr_direct_dispatches, 1);
			scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
			return;
		}
	}

	owed = tctx && owed_critical(tctx);
	if (owed) {
		scx_bpf_dsq_insert_vtime(p, owed_dsq(prev_cpu), slice, dl, enq_flags);
		__sync_fetch_and_add(&nr_owed_critical, 1);
	} else {
		scx_bpf_dsq_insert_vtime(p, llc_dsq(prev_cpu), slice, dl, enq_flags);
	}
	__sync_fetch_and_add(&nr_queued_dispatches, 1);

	if (tctx && (enq_flags & SCX_ENQ_WAKEUP)) {
		cpu = preemption_victim(p, tctx, dl, owed, prev_cpu);
		if (cpu >= 0) {
			scx_bpf_kick_cpu(cpu, SCX_KICK_PREEMPT);
			__sync_fetch_and_add(&nr_preemptions, 1);
		}
	}
}

#define STARVE_CHECK_NS	(50ULL * 1000 * 1000)
#define STARVE_SCAN_MAX	512
static u64 starve_checked_at[MAX_LLCS];

/*
 * The last resort of the wall-time bounds: a deadline set under light
 * weights can lie seconds of wall time ahead once heavy tasks arrive (the
 * fair clock slows as the runnable weight grows), so every STARVE_CHECK_NS
 * one CPU of each LLC looks through its queue for a task that has waited
 * STARVE_NS and runs it next.
 */
static bool rescue_starving(s32 cpu)
{
	u32 llc = llc_of(cpu), n = 0;
	u64 now = scx_bpf_now(), last;
	struct task_struct *p;

	if (llc >= MAX_LLCS)
		return false;
	last = starve_checked_at[llc];
	if (now - last < STARVE_CHECK_NS ||
	    __sync_val_compare_and_swap(&starve_checked_at[llc], last, now) != last)
		return false;
	bpf_for_each(scx_dsq, p, llc_dsq(cpu), 0) {
		struct task_ctx *tctx;

		if (++n > STARVE_SCAN_MAX)
			break;
		tctx = lookup_task_ctx(p);
		if (!tctx || !tctx->ready_at || (s64)(now - tctx->ready_at) < (s64)STARVE_NS ||
		    !bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
			continue;
		if (scx_bpf_dsq_move(BPF_FOR_EACH_ITER, p, SCX_DSQ_LOCAL, 0)) {
			__sync_fetch_and_add(&nr_rescued, 1);
			return true;
		}
	}
	return false;
}

/* Move the earliest deadline of this CPU's queue and its LLC's to local. */
static bool take_earliest(s32 cpu)
{
	struct task_struct *mine = __COMPAT_scx_bpf_dsq_peek(cpu_dsq(cpu));
	struct task_struct *shared = __COMPAT_scx_bpf_dsq_peek(llc_dsq(cpu));

	if (mine && (!shared || prism_vtime_before(mine->scx.dsq_vtime, shared->scx.dsq_vtime)) &&
	    scx_bpf_dsq_move_to_local(cpu_dsq(cpu), 0))
		return true;
	if (scx_bpf_dsq_move_to_local(llc_dsq(cpu), 0))
		return true;
	return scx_bpf_dsq_move_to_local(cpu_dsq(cpu), 0);
}

/*
 * Should @prev, out of slice but still runnable, go on rather than the
 * head of its LLC's queue? Yes if its deadline, charged for the run it is
 * finishing, is still the earlier one.
 */
static bool prev_goes_on(struct task_struct *prev, s32 cpu)
{
	struct task_struct *head;
	struct task_ctx *tctx;
	struct cpu_ctx *cctx;
	u64 dl;

	if (!prev || !(prev->scx.flags & SCX_TASK_QUEUED) || pinned(prev))
		return false;
	tctx = lookup_task_ctx(prev);
	if (!tctx)
		return false;
	if (scx_bpf_dsq_nr_queued(cpu_dsq(cpu)))
		return false;
	if (!prism_bw_charge(prev, &tctx->bw))
		return false;
	/* a relabel reaches a task that keeps its CPU too */
	refresh_weight(prev, tctx);
	dl = deadline_after(tctx, scx_bpf_now() - tctx->last_run_at);
	head = __COMPAT_scx_bpf_dsq_peek(llc_dsq(cpu));
	if (head && !prism_vtime_before(dl, head->scx.dsq_vtime))
		return false;
	scx_bpf_task_set_slice(prev, task_slice(prev, tctx, cpu));
	prism_bw_start(prev, &tctx->bw);
	cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	if (cctx) {
		cctx->deadline = dl;
		cctx->class = tctx->class & (PRISM_NR_CLASSES - 1);
	}
	return true;
}

/*
 * A CPU needs work: the wall-time bound first (a task waiting STARVE_NS
 * is never passed over again), then owed critical tasks, then the
 * earliest deadline here or the previous task if it is earlier; an idle
 * LLC helps another before the previous task goes on alone.
 */
void BPF_STRUCT_OPS(pbl_dispatch, s32 cpu, struct task_struct *prev)
{
	struct cpu_ctx *cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	struct task_ctx *tctx;
	u32 llc = llc_of(cpu), i;

	if (cctx)
		cctx->affine_chain = 0;
	prism_bw_release();
	/* (owed queues fill only with --prism: without it, no look at them) */
	if (rescue_starving(cpu) || (prism_enabled && scx_bpf_dsq_move_to_local(owed_dsq(cpu), 0)) ||
	    prev_goes_on(prev, cpu) || take_earliest(cpu))
		return;
	/* nothing here: help another LLC */
	bpf_for(i, 0, nr_llcs) {
		if (i == llc || i >= MAX_LLCS)
			continue;
		if ((prism_enabled && scx_bpf_dsq_move_to_local(OWED_DSQ_BASE + i, 0)) ||
		    scx_bpf_dsq_move_to_local(LLC_DSQ_BASE + i, 0)) {
			__sync_fetch_and_add(&nr_steals, 1);
			return;
		}
	}
	/* nothing waits anywhere: the previous task goes on, within its cpu.max */
	if (!prev || !(prev->scx.flags & SCX_TASK_QUEUED))
		return;
	tctx = lookup_task_ctx(prev);
	if (tctx) {
		if (!prism_bw_charge(prev, &tctx->bw))
			return;
	}
	scx_bpf_task_set_slice(prev, task_slice(prev, tctx, cpu));
	if (tctx)
		prism_bw_start(prev, &tctx->bw);
}

/* It became runnable: its weight counts in its cgroup's share, a new burst (and wait) begins. */
void BPF_STRUCT_OPS(pbl_runnable, struct task_struct *p, u64 enq_flags)
{
	struct task_ctx *tctx = lookup_task_ctx(p);
	u64 now = scx_bpf_now();

	if (!tctx)
		return;
	tctx->ready_at = now;
	prism_cg_count(p, &tctx->cg, tctx->own_weight ?: 100);
	prism_fair_woke(&tctx->fair, now);
}

/* It starts a stint: record its wait, and what this CPU runs, for preemption choices. */
void BPF_STRUCT_OPS(pbl_running, struct task_struct *p)
{
	struct task_ctx *tctx = lookup_task_ctx(p);
	struct cpu_ctx *cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	u64 now = scx_bpf_now();
	u32 class = PRISM_CLASS_UNSET;

	if (tctx) {
		class = tctx->class & (PRISM_NR_CLASSES - 1);
		tctx->last_run_at = now;
		prism_bw_start(p, &tctx->bw);
		if (tctx->ready_at) {
			prism_wait_record(class, tctx->ready_at, now);
			tctx->ready_at = 0;
		}
	}
	__sync_fetch_and_add(&nr_runs[class], 1);
	if (cctx) {
		cctx->started_at = now;
		cctx->deadline = p->scx.dsq_vtime;
		cctx->class = class;
		cctx->running = 1;
	}
}

/* Its stint ends: charge its vruntime and its cgroups' cpu.max budgets with what it ran. */
void BPF_STRUCT_OPS(pbl_stopping, struct task_struct *p, bool runnable)
{
	struct task_ctx *tctx = lookup_task_ctx(p);
	struct cpu_ctx *cctx = bpf_map_lookup_elem(&cpu_ctx_stor, &(u32){0});
	u64 now = scx_bpf_now(), ran;

	if (cctx)
		cctx->running = 0;
	if (!tctx)
		return;
	ran = now - tctx->last_run_at;
	prism_fair_charge(&tctx->fair, ran, !runnable);
	prism_bw_charge(p, &tctx->bw);
	__sync_fetch_and_add(&class_runtime_ns[tctx->class & (PRISM_NR_CLASSES - 1)], ran);
	if (runnable)
		tctx->ready_at = now;	/* preempted or out of slice: waits again */
}

/* Its weight leaves its cgroup's share and the fair clock's total. */
static void uncount_weight(struct task_struct *p)
{
	struct task_ctx *tctx = lookup_task_ctx(p);

	if (tctx)
		prism_cg_uncount(&tctx->cg);
}

/* It sleeps: no longer runnable, no longer counted in its cgroup's share. */
void BPF_STRUCT_OPS(pbl_quiescent, struct task_struct *p, u64 deq_flags)
{
	uncount_weight(p);
}

/* Leaving sched_ext (or exiting) while runnable: no longer counted. */
void BPF_STRUCT_OPS(pbl_disable, struct task_struct *p)
{
	uncount_weight(p);
}

/* It enters sched_ext: it starts at the fair clock, owed nothing and owing nothing. */
void BPF_STRUCT_OPS(pbl_enable, struct task_struct *p)
{
	struct task_ctx *tctx = lookup_task_ctx(p);

	if (tctx) {
		prism_fair_start(&tctx->fair, scx_bpf_now());
		tctx->own_weight = 100;
	}
	p->scx.dsq_vtime = prism_vtime_now;
}

/* Its context (and bus cache) allocated here, where it may fail, so that enqueue never allocates. */
s32 BPF_STRUCT_OPS(pbl_init_task, struct task_struct *p, struct scx_init_task_args *args)
{
	if (!bpf_task_storage_get(&task_ctx_stor, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return -ENOMEM;
	/* the bus cache too, so enqueue never allocates */
	if (prism_enabled)
		bpf_task_storage_get(&prism_task_cache, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	return 0;
}

/* A cgroup appears (or exists at load): its cpu.weight under its parent, its cpu.max. */
s32 BPF_STRUCT_OPS(pbl_cgroup_init, struct cgroup *cgrp, struct scx_cgroup_init_args *args)
{
	if (bpf_core_field_exists(args->bw_quota_us))
		prism_bw_set(cgrp, args->bw_period_us, args->bw_quota_us, args->bw_burst_us);
	return prism_cg_init(cgrp, args->weight);
}

/* A cgroup goes away: its share and limit state with it. */
void BPF_STRUCT_OPS(pbl_cgroup_exit, struct cgroup *cgrp)
{
	prism_bw_exit(cgrp);
	prism_cg_exit(cgrp);
}

/* cpu.max (or cpu.max.burst) written: the cgroup's limit from now. */
void BPF_STRUCT_OPS(pbl_cgroup_set_bandwidth, struct cgroup *cgrp, u64 period_us, u64 quota_us,
		    u64 burst_us)
{
	prism_bw_set(cgrp, period_us, quota_us, burst_us);
}

/* A task moves to another cgroup: its weight counts there from now. */
void BPF_STRUCT_OPS(pbl_cgroup_move, struct task_struct *p, struct cgroup *from, struct cgroup *to)
{
	struct task_ctx *tctx = lookup_task_ctx(p);

	if (tctx)
		prism_cg_move(&tctx->cg, to);
}

/* cpu.weight written: the cgroup's share among its siblings changes. */
void BPF_STRUCT_OPS(pbl_cgroup_set_weight, struct cgroup *cgrp, u32 weight)
{
	prism_cg_set_weight(cgrp, weight);
}

/* Put @cpu into the cpumask of @domains[@idx], creating it on first use. */
static int domain_add(void *domains, u32 idx, s32 cpu)
{
	struct bpf_cpumask *mask;
	struct domain *d;

	d = bpf_map_lookup_elem(domains, &idx);
	if (!d)
		return -ENOENT;
	if (!d->cpus) {
		mask = bpf_cpumask_create();
		if (!mask)
			return -ENOMEM;
		mask = bpf_kptr_xchg(&d->cpus, mask);
		if (mask)
			bpf_cpumask_release(mask);
	}
	bpf_rcu_read_lock();
	mask = d->cpus;
	if (mask)
		bpf_cpumask_set_cpu(cpu, mask);
	bpf_rcu_read_unlock();
	return 0;
}

/* Loaded: the queues of every CPU and LLC, the topology domains, cpu.max's state. */
s32 BPF_STRUCT_OPS_SLEEPABLE(pbl_init)
{
	struct bpf_cpumask *scratch;
	struct cpu_ctx *cctx;
	s32 cpu, err;
	u32 i;

	nr_cpu_ids = scx_bpf_nr_cpu_ids();
	bpf_for(cpu, 0, nr_cpu_ids) {
		if (cpu >= MAX_CPUS)
			break;
		err = scx_bpf_create_dsq(cpu_dsq(cpu), -1);
		if (err)
			return err;
		err = domain_add(&llc_domains, llc_of(cpu), cpu);
		if (err)
			return err;
		err = domain_add(&node_domains, node_of(cpu), cpu);
		if (err)
			return err;
		cctx = bpf_map_lookup_percpu_elem(&cpu_ctx_stor, &(u32){0}, cpu);
		if (!cctx)
			return -ENOENT;
		scratch = bpf_cpumask_create();
		if (!scratch)
			return -ENOMEM;
		scratch = bpf_kptr_xchg(&cctx->scratch, scratch);
		if (scratch)
			bpf_cpumask_release(scratch);
	}
	bpf_for(i, 0, nr_llcs) {
		if (i >= MAX_LLCS)
			break;
		err = scx_bpf_create_dsq(LLC_DSQ_BASE + i, -1);
		if (!err)
			err = scx_bpf_create_dsq(OWED_DSQ_BASE + i, -1);
		if (err)
			return err;
	}
	return prism_bw_init();
}

/*
 * CPU hotplug. Having these callbacks is what keeps the scheduler loaded:
 * without them the kernel unloads it at every CPU going on or offline and
 * asks user space to load it again (19-20 s of verification under TCG).
 * The idle mask and the kernel's migration of a dying CPU's tasks cover
 * placement; a CPU away is only never a preemption victim.
 */
void BPF_STRUCT_OPS(pbl_cpu_online, s32 cpu)
{
}

/* A CPU goes away: it runs nothing, so it is nobody's preemption victim. */
void BPF_STRUCT_OPS(pbl_cpu_offline, s32 cpu)
{
	struct cpu_ctx *cctx = bpf_map_lookup_percpu_elem(&cpu_ctx_stor, &(u32){0}, cpu);

	if (cctx)
		cctx->running = 0;
}

/*
 * A higher class (a SCHED_FIFO task, deadline, stop) took @cpu: what waits in
 * its local queue would wait out that class's whole run (an RT hog's is
 * seconds). Back through ops.enqueue with them, to an idle CPU or the shared
 * queues another CPU serves; a task pinned here returns to this CPU's queue.
 */
void BPF_STRUCT_OPS(pbl_cpu_release, s32 cpu, struct scx_cpu_release_args *args)
{
	scx_bpf_reenqueue_local();
}

/* Unloaded or ejected: say why, for user space to report. */
void BPF_STRUCT_OPS(pbl_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(prism_bpfland_ops,
	       .select_cpu		= (void *)pbl_select_cpu,
	       .enqueue			= (void *)pbl_enqueue,
	       .dispatch		= (void *)pbl_dispatch,
	       .runnable		= (void *)pbl_runnable,
	       .running			= (void *)pbl_running,
	       .stopping		= (void *)pbl_stopping,
	       .quiescent		= (void *)pbl_quiescent,
	       .enable			= (void *)pbl_enable,
	       .disable			= (void *)pbl_disable,
	       .init_task		= (void *)pbl_init_task,
	       .cgroup_init		= (void *)pbl_cgroup_init,
	       .cgroup_exit		= (void *)pbl_cgroup_exit,
	       .cgroup_move		= (void *)pbl_cgroup_move,
	       .cgroup_set_weight	= (void *)pbl_cgroup_set_weight,
	       .cgroup_set_bandwidth	= (void *)pbl_cgroup_set_bandwidth,
	       .cpu_online		= (void *)pbl_cpu_online,
	       .cpu_offline		= (void *)pbl_cpu_offline,
	       .cpu_release		= (void *)pbl_cpu_release,
	       .init			= (void *)pbl_init,
	       .exit			= (void *)pbl_exit,
	       .timeout_ms		= 5000,
	       .name			= "scx_prism_bpfland");
