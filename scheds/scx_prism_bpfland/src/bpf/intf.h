/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the BPF side and the Rust loader of scx_prism_bpfland agree on
 * (bindgen'd into bpf_intf.rs).
 */
#ifndef __PRISM_BPFLAND_INTF_H
#define __PRISM_BPFLAND_INTF_H

enum consts {
	MAX_CPUS	= 1024,
	MAX_LLCS	= 256,
	MAX_NODES	= 64,
};

#endif /* __PRISM_BPFLAND_INTF_H */
