/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A task preempted inside an RCU read-side critical section holds up every
 * RCU grace period of the machine until it runs again and leaves the
 * section; sched_ext ejects the scheduler when RCU reports the stall. The
 * kernel's own cure, RCU priority boosting, is off in distribution kernels
 * (RCU_BOOST needs RCU_EXPERT), and a light task waits long: a nice-19
 * kthread (weight 1) gets a stint about every half second beside CPU hogs.
 * In the lab, under stress-ng, both schedulers were ejected for RCU stalls
 * (21 s), once with khugepaged preempted in the middle of a collapse.
 *
 * So a preempted reader queues for one short stint as if it had just woken
 * at the fair clock (its vruntime, and so its share, is left alone), and
 * cpu.max does not hold it: the kernel's own bandwidth control throttles a
 * task only on its way back to user space. The flag read is the kernel's:
 * PREEMPT_RCU sets rcu_read_unlock_special.b.blocked when a reader is
 * switched out, and clears it when the reader leaves the section, so a
 * user-space program cannot hold it.
 */
#ifndef __PRISM_RCU_READER_BPF_H
#define __PRISM_RCU_READER_BPF_H

#include <prism/fair_deadline.bpf.h>

/* preempted readers queued for a short stint (statistics, read by user space) */
volatile __u64 nr_rcu_readers;

/* Was @p switched out inside an RCU read-side critical section it has not left? */
static __always_inline bool prism_rcu_reader_preempted(const struct task_struct *p)
{
	if (!bpf_core_field_exists(p->rcu_read_unlock_special))
		return false;	/* a kernel without preemptible RCU: readers are never preempted */
	return p->rcu_read_unlock_special.b.blocked;
}

/*
 * From ops.enqueue, with the @dl and @slice @p would queue with: if it is a
 * preempted reader, its next stint comes no later than the fair clock and
 * lasts @slice_min (counted); true if so (cpu.max must not hold it).
 */
static __always_inline bool prism_rcu_reader_stint(const struct task_struct *p, __u64 *dl,
						   __u64 *slice, __u64 slice_min)
{
	if (!prism_rcu_reader_preempted(p))
		return false;
	if (!prism_vtime_before(*dl, prism_vtime_now))
		*dl = prism_vtime_now;
	*slice = slice_min;
	__sync_fetch_and_add(&nr_rcu_readers, 1);
	return true;
}

#endif /* __PRISM_RCU_READER_BPF_H */
