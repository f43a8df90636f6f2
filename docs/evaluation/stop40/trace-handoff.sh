#!/bin/bash
# Runs in the lab guest: ci/lab run -- docs/evaluation/stop40/trace-handoff.sh <lab_scx_prism_bpfland test binary>:
# records sched_waking (perf) during the hand-off lab test; who wakes the chain's tasks.
P=$1
perf record -q -e sched:sched_waking -a -o /tmp/perf.data -- "$P" --include-ignored --exact with_prism_a_critical_chain_hands_its_cpu_on_without_ipis --nocapture > /tmp/t.log 2>&1
grep -E "hand-offs" /tmp/t.log
perf script -i /tmp/perf.data -F comm,tid,cpu,event,trace 2>/dev/null > /tmp/wk.txt
wc -l /tmp/wk.txt
# waker comm -> wakee comm, for wakees named prism-rpc
grep "comm=prism-rpc" /tmp/wk.txt | awk '{w=$1; for(i=1;i<=NF;i++) if ($i ~ /^comm=/) c=$i; print w, "->", c}' | sort | uniq -c | sort -rn | head -20
grep "comm=prism-rpc" /tmp/wk.txt | head -40
