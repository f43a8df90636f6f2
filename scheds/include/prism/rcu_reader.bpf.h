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

/* Was @p switched out inside an RCU read-side critical section it has not left? */
static __always_inline bool prism_rcu_reader_preempted(const struct task_struct *p)
{
	if (!bpf_core_field_exists(p->rcu_read_unlock_special))
		return false;	/* a kernel without preemptible RCU: readers are never preempted */
	return p->rcu_read_unlock_special.b.blocked;
}

/* The deadline of a preempted reader's next stint: no later than the fair clock. */
static __always_inline __u64 prism_rcu_reader_deadline(__u64 dl)
{
	return prism_vtime_before(dl, prism_vtime_now) ? dl : prism_vtime_now;
}

#endif /* __PRISM_RCU_READER_BPF_H */
