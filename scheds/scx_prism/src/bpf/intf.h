/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What scx_prism's BPF side and its Rust policy loop agree on
 * (bindgen'd into bpf_intf.rs: never two copies).
 */
#ifndef __SCX_PRISM_INTF_H
#define __SCX_PRISM_INTF_H

enum {
	MAX_CPUS = 1024,
	/* per-class arrays: indexed by the bus's class value (PRISM_NR_CLASSES) */
	PRISM_CLASS_SLOTS = 4,
};

#endif /* __SCX_PRISM_INTF_H */
