//! cpu.max throttling as both schedulers report it. The BPF side keeps one
//! `struct prism_bw` per limited cgroup in the `prism_bws` hash, keyed by
//! cgroup id (scheds/include/prism/cgroup_bandwidth.bpf.h); this decodes a
//! snapshot of it and takes the difference of two.

use std::collections::BTreeMap;

/// `struct prism_bw`: eight u64s, throttled_ns and nr_throttled last.
const ENTRY_SIZE: usize = 64;
const THROTTLED_NS_AT: usize = 48;
const NR_THROTTLED_AT: usize = 56;

/// What one cgroup's limit has cost it so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupThrottling {
    /// Times it ran out of budget.
    pub nr_throttled: u64,
    /// Time spent out of budget (counted when the budget comes back).
    pub throttled_ns: u64,
}

/// Every limited cgroup's throttling at one moment, by cgroup id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Throttling {
    pub cgroups: BTreeMap<u64, CgroupThrottling>,
}

/// One interval's throttling.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ThrottlingInterval {
    /// cgroups with a cpu.max limit now
    pub limited: usize,
    /// times they ran out of budget in the interval
    pub throttles: u64,
    /// their time out of budget in the interval
    pub throttled_ns: u64,
    /// the cgroup throttled longest in the interval (id, its share of it)
    pub most: Option<(u64, CgroupThrottling)>,
}

impl Throttling {
    /// From the map's (key, value) pairs as read; a pair of the wrong size
    /// (another build's layout) is skipped.
    pub fn decode(entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Throttling {
        let u64_at = |b: &[u8], at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
        let cgroups = entries
            .into_iter()
            .filter(|(k, v)| k.len() == 8 && v.len() == ENTRY_SIZE)
            .map(|(k, v)| {
                let t = CgroupThrottling {
                    nr_throttled: u64_at(&v, NR_THROTTLED_AT),
                    throttled_ns: u64_at(&v, THROTTLED_NS_AT),
                };
                (u64_at(&k, 0), t)
            })
            .collect();
        Throttling { cgroups }
    }

    /// The interval since `prev`: a cgroup limited since then counts from
    /// zero, one no longer limited is gone from both.
    pub fn since(&self, prev: &Throttling) -> ThrottlingInterval {
        let mut interval = ThrottlingInterval {
            limited: self.cgroups.len(),
            ..Default::default()
        };
        for (&id, cur) in &self.cgroups {
            let before = prev.cgroups.get(&id).copied().unwrap_or_default();
            let d = CgroupThrottling {
                nr_throttled: cur.nr_throttled.saturating_sub(before.nr_throttled),
                throttled_ns: cur.throttled_ns.saturating_sub(before.throttled_ns),
            };
            interval.throttles += d.nr_throttled;
            interval.throttled_ns += d.throttled_ns;
            let longer = interval
                .most
                .is_none_or(|(_, m)| d.throttled_ns > m.throttled_ns);
            if d.nr_throttled + d.throttled_ns > 0 && longer {
                interval.most = Some((id, d));
            }
        }
        interval
    }
}

/// The `--stats` line of an interval's throttling from its figures (as the
/// schedulers' metrics keep them), None while no cgroup is limited; `most`
/// is (cgroup id, times, ms) of the cgroup throttled longest.
pub fn stats_line(
    limited: u64,
    throttles: u64,
    throttled_ms: u64,
    most: Option<(u64, u64, u64)>,
) -> Option<String> {
    if limited == 0 {
        return None;
    }
    let mut line = format!(
        "cpu.max: {limited} limited cgroups, throttled {throttles} times, {throttled_ms} ms"
    );
    if let Some((id, times, ms)) = most {
        line += &format!("; most: cgroup id {id}, {times} times, {ms} ms");
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, nr: u64, ns: u64) -> (Vec<u8>, Vec<u8>) {
        let mut v = vec![0u8; ENTRY_SIZE];
        v[0..8].copy_from_slice(&50_000_000u64.to_ne_bytes());
        v[THROTTLED_NS_AT..THROTTLED_NS_AT + 8].copy_from_slice(&ns.to_ne_bytes());
        v[NR_THROTTLED_AT..NR_THROTTLED_AT + 8].copy_from_slice(&nr.to_ne_bytes());
        (id.to_ne_bytes().to_vec(), v)
    }

    #[test]
    fn decodes_the_counters_and_skips_foreign_layouts() {
        let t = Throttling::decode([entry(7, 3, 900), (vec![1; 8], vec![0; 40])]);
        assert_eq!(t.cgroups.len(), 1);
        assert_eq!(
            t.cgroups[&7],
            CgroupThrottling {
                nr_throttled: 3,
                throttled_ns: 900
            }
        );
    }

    #[test]
    fn an_interval_counts_each_cgroup_from_its_previous_value_or_zero() {
        let prev = Throttling::decode([entry(1, 10, 1_000), entry(2, 5, 5_000)]);
        let cur = Throttling::decode([entry(1, 12, 4_000), entry(2, 5, 5_000), entry(3, 1, 500)]);
        let i = cur.since(&prev);
        assert_eq!(i.limited, 3);
        assert_eq!(i.throttles, 3);
        assert_eq!(i.throttled_ns, 3_500);
        assert_eq!(
            i.most,
            Some((
                1,
                CgroupThrottling {
                    nr_throttled: 2,
                    throttled_ns: 3_000
                }
            ))
        );
    }

    #[test]
    fn a_quiet_interval_names_no_cgroup() {
        let t = Throttling::decode([entry(4, 2, 100)]);
        let i = t.since(&t);
        assert_eq!(
            (i.limited, i.throttles, i.throttled_ns, i.most),
            (1, 0, 0, None)
        );
    }

    #[test]
    fn the_stats_line_names_the_most_throttled_cgroup_when_there_is_one() {
        assert_eq!(stats_line(0, 0, 0, None), None);
        assert_eq!(
            stats_line(1, 0, 0, None).unwrap(),
            "cpu.max: 1 limited cgroups, throttled 0 times, 0 ms"
        );
        assert_eq!(
            stats_line(3, 5, 40, Some((77, 4, 30))).unwrap(),
            "cpu.max: 3 limited cgroups, throttled 5 times, 40 ms; most: cgroup id 77, 4 times, 30 ms"
        );
    }
}
