/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The latency class as both schedulers rank it, on the bus's one definition
 * (PRISM_CLASS_* in prism/bus.bpf.h): per-class arrays have
 * PRISM_NR_CLASSES slots indexed by the bus value (unset, critical, normal,
 * batch).
 */
#ifndef __PRISM_CLASS_RANK_BPF_H
#define __PRISM_CLASS_RANK_BPF_H

#define PRISM_NR_CLASSES	(PRISM_CLASS_BATCH + 1)

/* Who may preempt whom: batch < normal and unlabelled < critical. */
static __always_inline __u32 prism_class_rank(__u32 class)
{
	switch (class) {
	case PRISM_CLASS_CRITICAL:
		return 2;
	case PRISM_CLASS_BATCH:
		return 0;
	default:
		return 1;
	}
}

#endif /* __PRISM_CLASS_RANK_BPF_H */
