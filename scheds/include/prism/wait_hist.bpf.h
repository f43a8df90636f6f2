/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Per-class histograms of the wait from ready to running, for the
 * schedulers' statistics: 4 buckets per power of two of nanoseconds, the
 * layout prism_sched::WaitHistogram reads (its BUCKETS; the Rust side
 * checks the array size through the skeleton's type).
 */
#ifndef __PRISM_WAIT_HIST_BPF_H
#define __PRISM_WAIT_HIST_BPF_H

#define PRISM_WAIT_BUCKETS	256

/* read by user space */
volatile __u64 wait_hist[PRISM_NR_CLASSES][PRISM_WAIT_BUCKETS];

/* Index of @ns (prism_sched::WaitHistogram::bucket). */
static __always_inline __u32 prism_wait_bucket(__u64 ns)
{
	__u64 v = ns;
	__u32 log = 0;

	if (ns < 4)
		return ns;
	if (v >> 32) { log += 32; v >>= 32; }
	if (v >> 16) { log += 16; v >>= 16; }
	if (v >> 8) { log += 8; v >>= 8; }
	if (v >> 4) { log += 4; v >>= 4; }
	if (v >> 2) { log += 2; v >>= 2; }
	if (v >> 1) { log += 1; }
	return (log * 4 + ((ns >> (log - 2)) & 3)) & (PRISM_WAIT_BUCKETS - 1);
}

/* A task of @class waited from @ready_at to @now (clocks of two CPUs: never negative). */
static __always_inline void prism_wait_record(__u32 class, __u64 ready_at, __u64 now)
{
	__s64 waited = now - ready_at;

	__sync_fetch_and_add(&wait_hist[class & (PRISM_NR_CLASSES - 1)]
				       [prism_wait_bucket(waited > 0 ? waited : 0)], 1);
}

#endif /* __PRISM_WAIT_HIST_BPF_H */
