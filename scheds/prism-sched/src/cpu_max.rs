//! cpu.max from cgroupfs, for kernels that do not pass it to the scheduler.
//!
//! From 6.17 the kernel hands a sched_ext scheduler every cgroup's cpu.max
//! (`ops.cgroup_init`'s arguments and `ops.cgroup_set_bandwidth`). Older
//! kernels with sched_ext (6.12 LTS) do not, and without the scheduler
//! nothing enforces cpu.max for the tasks it owns. There the scheduler's
//! user space reads `cpu.max` and `cpu.max.burst` of every cgroup and
//! publishes each change to the same BPF state the callback fills
//! (`prism_bw_publish` in scheds/include/prism/cgroup_bandwidth.bpf.h).
//!
//! What polling costs: one walk of cgroupfs per poll (two small reads per
//! cgroup with the cpu controller); a limit written to a new cgroup takes
//! effect within one poll interval, a limit's removal too.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use libbpf_rs::ProgramMut;
use prism_bus::cgroup::{vanished, walk_tree};

/// Deepest directory walked; real trees are < 10 deep.
const MAX_DEPTH: usize = 32;

/// cpu.max periods the kernel accepts (1 ms .. 1 s), in microseconds.
const PERIOD_US: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;

/// One cgroup's limit, as `ops.cgroup_set_bandwidth` passes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub period_us: u64,
    pub quota_us: u64,
    pub burst_us: u64,
}

/// `cpu.max` ("QUOTA PERIOD" or "max PERIOD") and `cpu.max.burst`: the
/// limit, or None for none ("max") or a text the kernel would never write.
pub fn parse(cpu_max: &str, cpu_max_burst: Option<&str>) -> Option<Limit> {
    let mut f = cpu_max.split_whitespace();
    let (quota, period) = (f.next()?, f.next()?);
    if f.next().is_some() || quota == "max" {
        return None;
    }
    let period_us: u64 = period.parse().ok().filter(|p| PERIOD_US.contains(p))?;
    let quota_us: u64 = quota.parse().ok().filter(|&q| q > 0)?;
    let burst_us = cpu_max_burst
        .and_then(|b| b.trim().parse().ok())
        .unwrap_or(0);
    Some(Limit {
        period_us,
        quota_us,
        burst_us,
    })
}

/// Every limited cgroup under `root`, by cgroup id. A cgroup that vanishes
/// during the walk is skipped (it is gone); any other failed read fails the
/// whole scan, so that a cgroup never reads as unlimited because it could
/// not be read (out of file descriptors, say).
pub fn scan(root: &Path) -> io::Result<HashMap<u64, Limit>> {
    fs::metadata(root)?;
    let mut limits = HashMap::new();
    walk_tree(root, "", 0, MAX_DEPTH, &mut |dir, _, id| {
        let read = |name: &str| match fs::read_to_string(dir.join(name)) {
            Ok(text) => Ok(Some(text)),
            // no cpu controller here, or the cgroup is going away
            Err(e) if vanished(&e) => Ok(None),
            Err(e) => Err(e),
        };
        if let Some(cpu_max) = read("cpu.max")?
            && let Some(limit) = parse(&cpu_max, read("cpu.max.burst")?.as_deref())
        {
            limits.insert(id, limit);
        }
        Ok(())
    })?;
    Ok(limits)
}

/// What to publish to go from `published` to `now`: each cgroup whose
/// limit is new or changed (Some) or gone (None: unlimited, or the cgroup
/// went away), in cgroup-id order.
pub fn changes(
    published: &HashMap<u64, Limit>,
    now: &HashMap<u64, Limit>,
) -> Vec<(u64, Option<Limit>)> {
    let mut out: Vec<(u64, Option<Limit>)> = now
        .iter()
        .filter(|(id, l)| published.get(id) != Some(l))
        .map(|(&id, &l)| (id, Some(l)))
        .chain(
            published
                .keys()
                .filter(|id| !now.contains_key(id))
                .map(|&id| (id, None)),
        )
        .collect();
    out.sort_by_key(|&(id, _)| id);
    out
}

/// Follows cgroupfs and publishes what changed since the last poll.
pub struct CpuMaxPoller {
    root: std::path::PathBuf,
    published: HashMap<u64, Limit>,
}

impl CpuMaxPoller {
    pub fn new(root: std::path::PathBuf) -> Self {
        CpuMaxPoller {
            root,
            published: HashMap::new(),
        }
    }

    /// Scan and publish every change through `publish` (cgroup id, limit or
    /// None). A change `publish` refuses is tried again at the next poll.
    /// Returns how many changes were published.
    pub fn poll(
        &mut self,
        mut publish: impl FnMut(u64, Option<Limit>) -> anyhow::Result<()>,
    ) -> anyhow::Result<usize> {
        let now = scan(&self.root)?;
        let mut done = 0;
        for (id, limit) in changes(&self.published, &now) {
            match publish(id, limit) {
                Ok(()) => {
                    done += 1;
                    match limit {
                        Some(l) => self.published.insert(id, l),
                        None => self.published.remove(&id),
                    };
                }
                Err(e) => log::debug!("cpu.max of cgroup {id}: not published yet: {e:#}"),
            }
        }
        Ok(done)
    }

    /// Publish what changed through `prog` (the scheduler's
    /// prism_bw_publish); a failed scan is logged and tried again at the
    /// next call.
    pub fn follow(&mut self, prog: &mut ProgramMut<'_>) {
        if let Err(e) = self.poll(|id, l| publish(prog, id, l)) {
            log::warn!("cpu.max: {e:#} (trying again at the next poll)");
        }
    }
}

/// What a scheduler runs beside its BPF side: nothing where the kernel
/// passes cpu.max itself (`kernel_passes_cpu_max`: sched_ext_ops has
/// cgroup_set_bandwidth), else a poller of cgroupfs that has published what
/// cgroupfs holds now through `prog` (the scheduler's prism_bw_publish).
pub fn start(kernel_passes_cpu_max: bool, prog: &mut ProgramMut<'_>) -> Option<CpuMaxPoller> {
    if kernel_passes_cpu_max {
        return None;
    }
    match prism_bus::cgroup::cgroup2_root() {
        Ok(root) => {
            log::info!(
                "this kernel passes no cpu.max to sched_ext (before 6.17): following {} instead",
                root.display()
            );
            let mut poller = CpuMaxPoller::new(root);
            poller.follow(prog);
            Some(poller)
        }
        Err(e) => {
            log::warn!("cpu.max not enforced: {e}");
            None
        }
    }
}

/// Publish one cgroup's limit (None: no limit) through the scheduler's
/// `prism_bw_publish` program. An error when it refuses (a cgroup it has not
/// seen initialised yet, a full map).
pub fn publish(
    prog: &mut libbpf_rs::ProgramMut<'_>,
    cgid: u64,
    limit: Option<Limit>,
) -> anyhow::Result<()> {
    // struct prism_bw_limit: cgid, period_us, quota_us (0: none), burst_us
    let l = limit.unwrap_or(Limit {
        period_us: 0,
        quota_us: 0,
        burst_us: 0,
    });
    let mut ctx: Vec<u8> = [cgid, l.period_us, l.quota_us, l.burst_us]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    let out = prog.test_run(libbpf_rs::ProgramInput {
        context_in: Some(&mut ctx),
        ..Default::default()
    })?;
    match out.return_value as i32 {
        0 => Ok(()),
        rc => anyhow::bail!(
            "prism_bw_publish: {}",
            std::io::Error::from_raw_os_error(-rc)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn limit(period_us: u64, quota_us: u64, burst_us: u64) -> Limit {
        Limit {
            period_us,
            quota_us,
            burst_us,
        }
    }

    #[test]
    fn parses_what_the_kernel_writes() {
        assert_eq!(
            parse("50000 100000\n", Some("0\n")),
            Some(limit(100000, 50000, 0))
        );
        assert_eq!(
            parse("200000 100000", Some("30000")),
            Some(limit(100000, 200000, 30000))
        );
        assert_eq!(parse("1000 1000", None), Some(limit(1000, 1000, 0)));
        assert_eq!(parse("max 100000\n", Some("0")), None);
    }

    #[test]
    fn refuses_what_the_kernel_never_writes() {
        for bad in [
            "",
            "50000",
            "50000 100000 7",
            "-5 100000",
            "0 100000",
            "50000 999",
            "50000 1000001",
            "x y",
        ] {
            assert_eq!(parse(bad, None), None, "{bad:?}");
        }
        // an unreadable burst is no burst, not no limit
        assert_eq!(
            parse("50000 100000", Some("?")),
            Some(limit(100000, 50000, 0))
        );
    }

    #[test]
    fn changes_are_the_new_the_changed_and_the_gone() {
        let published = HashMap::from([
            (1, limit(100000, 50000, 0)),
            (2, limit(100000, 50000, 0)),
            (3, limit(100000, 10000, 0)),
        ]);
        let now = HashMap::from([
            (1, limit(100000, 50000, 0)),
            (2, limit(100000, 80000, 0)),
            (4, limit(50000, 5000, 0)),
        ]);
        assert_eq!(
            changes(&published, &now),
            vec![
                (2, Some(limit(100000, 80000, 0))),
                (3, None),
                (4, Some(limit(50000, 5000, 0)))
            ]
        );
        assert!(changes(&now, &now).is_empty());
    }

    /// A directory tree laid out as cgroupfs (this host's cgroup2 has no cpu
    /// controller; the lab's cpu_max_written_while_running_takes_effect runs
    /// the poller on the real one, on 6.12): a limit written to a new
    /// cgroup is found, a refused publish is retried, an unchanged limit is
    /// not published again, and a lifted limit and a removed cgroup are.
    #[test]
    fn the_poller_follows_a_tree() {
        let root = std::env::temp_dir().join(format!("prism-cpu-max-{}", std::process::id()));
        let (pod, sub) = (
            root.join("kubepods.slice/pod"),
            root.join("kubepods.slice/pod/c"),
        );
        fs::create_dir_all(&sub).unwrap();
        fs::write(root.join("kubepods.slice/cpu.max"), "max 100000\n").unwrap();
        let id = |p: &Path| fs::metadata(p).unwrap().ino();
        let (pod_id, sub_id) = (id(&pod), id(&sub));
        let mut poller = CpuMaxPoller::new(root.clone());
        fn poll(poller: &mut CpuMaxPoller, accept: bool) -> Vec<(u64, Option<Limit>)> {
            let mut seen = Vec::new();
            poller
                .poll(|cg, l| {
                    seen.push((cg, l));
                    if accept {
                        Ok(())
                    } else {
                        anyhow::bail!("refused")
                    }
                })
                .unwrap();
            seen.sort_by_key(|&(cg, _)| cg);
            seen
        }
        let half = Some(limit(100000, 50000, 0));
        let tenth = Some(limit(100000, 10000, 20000));
        fs::write(pod.join("cpu.max"), "50000 100000\n").unwrap();
        assert_eq!(poll(&mut poller, false), vec![(pod_id, half)]);
        assert_eq!(poll(&mut poller, true), vec![(pod_id, half)]);
        assert_eq!(poll(&mut poller, true), vec![]);
        fs::write(sub.join("cpu.max"), "10000 100000\n").unwrap();
        fs::write(sub.join("cpu.max.burst"), "20000\n").unwrap();
        fs::write(pod.join("cpu.max"), "max 100000\n").unwrap();
        let mut want = vec![(pod_id, None), (sub_id, tenth)];
        want.sort_by_key(|&(cg, _)| cg);
        assert_eq!(poll(&mut poller, true), want);
        fs::remove_dir_all(&sub).unwrap();
        assert_eq!(poll(&mut poller, true), vec![(sub_id, None)]);
        // a read that fails (here: cpu.max is a directory) fails the scan:
        // nothing is published, the pod's limit is not lifted
        fs::write(pod.join("cpu.max"), "50000 100000\n").unwrap();
        assert_eq!(poll(&mut poller, true), vec![(pod_id, half)]);
        let odd = pod.join("odd");
        fs::create_dir_all(odd.join("cpu.max")).unwrap();
        assert!(
            poller
                .poll(|_, _| panic!("published on a failed scan"))
                .is_err()
        );
        fs::remove_dir_all(&odd).unwrap();
        assert_eq!(poll(&mut poller, true), vec![]);
        fs::remove_dir_all(&root).unwrap();
        assert!(
            poller.poll(|_, _| Ok(())).is_err(),
            "an unreadable root is an error"
        );
    }
}
