#!/bin/bash
# scx_prism_bpfland's hundreds_of_throttled_cgroups_neither_eject_nor_delay_others,
# builds side by side in one boot (the test runs target/release/scx_prism_bpfland,
# which the guest's writable overlay lets this script swap). Run in the lab guest:
#   cargo test --release --locked --no-run --test lab_scx_prism_bpfland   # the test binary
#   ci/lab run --timeout 1500 -- env BUILDS="old new" docs/evaluation/stop35/throttled-ab.sh \
#       /tmp/builds target/release/deps/lab_scx_prism_bpfland-HASH
# /tmp/builds/<name>/scx_prism_bpfland is each build's binary; ROUNDS (default 3)
# rounds, the builds interleaved in each.
set -u
D=$1 T=$2
for i in $(seq "${ROUNDS:-3}"); do
	for b in ${BUILDS:-old new}; do
		cp "$D/$b/scx_prism_bpfland" target/release/scx_prism_bpfland
		echo "=== round $i: $b"
		"$T" --ignored --exact hundreds_of_throttled_cgroups_neither_eject_nor_delay_others --nocapture 2>&1 |
			grep -E "probe |test result|panicked"
	done
done
