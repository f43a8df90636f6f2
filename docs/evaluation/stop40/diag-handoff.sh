#!/bin/bash
# Runs in the lab guest: ci/lab run -- docs/evaluation/stop40/diag-handoff.sh <lab_scx_prism_bpfland test binary>,
# on a build with hand-off-misses-diagnostic.patch applied: runs the hand-off lab test and prints
# the last sample of each loaded instance's diag_* counters (why a critical wakee was not handed off).
export PATH=$PATH:/usr/sbin
B=$1
"$B" --include-ignored --exact with_prism_a_critical_chain_hands_its_cpu_on_without_ipis --nocapture > /tmp/t.log 2>&1 &
t=$!
: > /tmp/snaps
while kill -0 $t 2>/dev/null; do
  for id in $(bpftool map show --json | jq -r '.[] | select(.name|test("bss$")) | .id'); do
    echo "$id $(bpftool map dump id $id --json 2>/dev/null | tr -d '\n')" >> /tmp/snaps
  done
  sleep 0.5
done
grep -E "hand-offs|test result" /tmp/t.log
python3 - <<'PY'
import json
def walk(x, out):
    if isinstance(x, dict):
        for k, v in x.items():
            if isinstance(v, int) and (k.startswith('diag_') or k == 'nr_affine'): out[k] = v
            else: walk(v, out)
    elif isinstance(x, list):
        for v in x: walk(v, out)
    return out
last = {}
for l in open('/tmp/snaps'):
    i, _, j = l.partition(' ')
    try: d = walk(json.loads(j), {})
    except Exception: continue
    if d: last[i] = d
for k, v in last.items(): print(k, v)
PY
