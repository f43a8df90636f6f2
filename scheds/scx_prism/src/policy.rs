//! The scheduling policy: which task runs next, for how long, in what order.
//! Pure: no BPF, no clock, no I/O, so it is tested on its own.
//!
//! - Each latency class has its own run queue, a binary heap ordered by
//!   deadline (capacity reserved up front: no allocation per task).
//! - Within a class, a task's vruntime advances by its CPU time divided by
//!   its effective weight (nice weight x cgroup cpu.weight x bus weight), and
//!   its deadline adds the CPU time it used since it last slept, so
//!   interactive tasks go before hogs of the same class.
//! - Across classes: critical before normal (and unlabelled) before batch,
//!   except that normal+batch together are owed a minimum share of CPU time
//!   (and batch a smaller one of that), measured over a decaying window, so
//!   no class starves another.
//! - An empty bus puts every task in the normal class: a plain weighted
//!   vruntime scheduler.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use prism_bus::LatencyClass;

/// Class indices: the bus's values (unset is scheduled as normal).
pub const UNSET: usize = LatencyClass::Unset as usize;
pub const CRITICAL: usize = LatencyClass::Critical as usize;
pub const NORMAL: usize = LatencyClass::Normal as usize;
pub const BATCH: usize = LatencyClass::Batch as usize;
pub const NR_CLASSES: usize = LatencyClass::ALL.len();

/// Run queues: critical, normal (with unset), batch.
const QUEUES: [usize; 3] = [CRITICAL, NORMAL, BATCH];

/// Order key of dispatched tasks; critical ones are placed this far ahead
/// of everything already dispatched.
const CRITICAL_JUMP: u64 = 1 << 40;

#[derive(Debug, Clone)]
pub struct Tunables {
    /// Base time slice, with every waiting task already on a CPU.
    pub slice_ns: u64,
    /// The floor the base slice shrinks to as tasks wait for the CPUs.
    pub slice_min_ns: u64,
    /// Batch slices are this many base slices (fewer context switches; a
    /// critical wakeup preempts them anyway).
    pub batch_slice_factor: u64,
    /// Minimum share of CPU time for normal+batch when they are runnable, in percent.
    pub min_share_pct: u64,
    /// Minimum share of batch within the normal+batch time, in percent.
    pub batch_min_share_pct: u64,
    /// Cap on the CPU-since-sleep penalty, in slices.
    pub max_exec_slices: u64,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            slice_ns: 5_000_000,
            slice_min_ns: 500_000,
            batch_slice_factor: 4,
            min_share_pct: 25,
            batch_min_share_pct: 10,
            max_exec_slices: 10,
        }
    }
}

/// A task asking for a decision (from a queued_task record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Runnable {
    pub pid: i32,
    pub cpu: i32,
    pub nr_cpus_allowed: u64,
    pub flags: u64,
    /// CPU time of its last stint.
    pub last_ran_ns: u64,
    /// CPU time since it last slept.
    pub exec_runtime: u64,
    /// As we last set it; 0 for a task we have not seen.
    pub vruntime: u64,
    pub enq_cnt: u64,
    pub class: u32,
    pub nice_weight: u32,
    pub cgroup_weight: u32,
    pub bus_weight: u32,
    /// It slept and is waking up (else it stayed runnable: slice end, preemption).
    pub woke: bool,
}

/// A decision for one task (a dispatched_task record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub pid: i32,
    /// None: any CPU.
    pub cpu: Option<i32>,
    pub flags: u64,
    pub slice_ns: u64,
    pub dsq_vtime: u64,
    pub vruntime: u64,
    pub enq_cnt: u64,
    pub class: usize,
    /// The request, to put it back if the decision cannot be sent.
    pub task: Runnable,
}

#[derive(Debug, Clone, Copy)]
struct Queued {
    deadline: u64,
    seq: u64,
    task: Runnable,
    vruntime: u64,
    /// When it was queued (Policy::tick's clock).
    queued_at: u64,
}

/// A task queued this long is released next, whatever its deadline: the
/// kernel's watchdog ejects the scheduler at 5 s, and a task of a
/// cpu.weight 1 cgroup (a BestEffort pod) may owe far more than that.
pub const STARVE_NS: u64 = 1_000_000_000;
/// How often the queues are searched for such a task.
const STARVE_SCAN_NS: u64 = 100_000_000;

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.deadline, self.seq).cmp(&(o.deadline, o.seq))
    }
}

pub struct Policy {
    t: Tunables,
    queues: [BinaryHeap<Reverse<Queued>>; NR_CLASSES],
    /// Per class: the vruntime of the last task released (min vruntime).
    clock: [u64; NR_CLASSES],
    /// Per class: decayed CPU time (the share guard's window).
    window: [f64; NR_CLASSES],
    /// BPF's cumulative per-class CPU time at the last window update.
    last_runtime: [u64; NR_CLASSES],
    seq: u64,
    dispatch_seq: u64,
    /// Monotonic time, ns (set by tick), and when the queues were last
    /// searched for starving tasks.
    now: u64,
    starve_scanned_at: u64,
}

/// Effective weight, 100 = a nice-0 task in a default cgroup, no bus weight.
pub fn effective_weight(t: &Runnable) -> u64 {
    let nice = u64::from(t.nice_weight.max(1));
    let cgroup = u64::from(if t.cgroup_weight == 0 {
        100
    } else {
        t.cgroup_weight
    });
    let bus = u64::from(if t.bus_weight == 0 { 64 } else { t.bus_weight });
    (nice * cgroup * bus / (100 * 64)).max(1)
}

impl Policy {
    pub fn new(t: Tunables, capacity: usize) -> Self {
        Policy {
            t,
            queues: std::array::from_fn(|_| BinaryHeap::with_capacity(capacity)),
            clock: [0; NR_CLASSES],
            window: [0.0; NR_CLASSES],
            last_runtime: [0; NR_CLASSES],
            seq: 0,
            dispatch_seq: CRITICAL_JUMP * 4,
            now: 0,
            starve_scanned_at: 0,
        }
    }

    /// The time now, monotonic ns (queue ages are measured with it).
    pub fn tick(&mut self, now_ns: u64) {
        self.now = self.now.max(now_ns);
    }

    /// The oldest task queued STARVE_NS or more, taken out of its queue
    /// (searched every STARVE_SCAN_NS: O(queued) then).
    fn take_starving(&mut self) -> Option<(usize, Queued)> {
        if self.now < self.starve_scanned_at + STARVE_SCAN_NS {
            return None;
        }
        self.starve_scanned_at = self.now;
        let (q, at) = QUEUES
            .into_iter()
            .filter_map(|q| {
                let oldest = self.queues[q].iter().map(|Reverse(e)| e.queued_at).min()?;
                Some((q, oldest))
            })
            .min_by_key(|&(_, at)| at)?;
        if self.now < at + STARVE_NS {
            return None;
        }
        let mut rest = std::mem::take(&mut self.queues[q]).into_vec();
        let i = rest.iter().position(|Reverse(e)| e.queued_at == at)?;
        let Reverse(e) = rest.swap_remove(i);
        self.queues[q] = BinaryHeap::from(rest);
        Some((q, e))
    }

    fn queue_of(class: u32) -> usize {
        match class as usize {
            CRITICAL => CRITICAL,
            BATCH => BATCH,
            _ => NORMAL,
        }
    }

    /// Number of tasks waiting for a decision.
    pub fn waiting(&self) -> usize {
        self.queues.iter().map(BinaryHeap::len).sum()
    }

    /// Take a task in: charge its last stint to its vruntime, compute its deadline.
    pub fn enqueue(&mut self, task: Runnable) {
        let q = Self::queue_of(task.class);
        let w = effective_weight(&task);
        let clock = self.clock[q];
        // A new task starts now; a sleeper keeps at most one slice of credit;
        // a task that stayed runnable keeps its lag (clamping it would undo
        // its weight: the heavier a task, the further ahead the clock runs).
        let vr = if task.vruntime == 0 {
            clock
        } else if task.woke {
            task.vruntime.max(clock.saturating_sub(self.t.slice_ns))
        } else {
            task.vruntime
        };
        let vr = vr + task.last_ran_ns * 100 / w;
        let exec = task
            .exec_runtime
            .min(self.t.max_exec_slices * self.t.slice_ns);
        let deadline = vr + exec * 100 / w;
        self.seq += 1;
        self.queues[q].push(Reverse(Queued {
            deadline,
            seq: self.seq,
            task,
            vruntime: vr,
            queued_at: self.now,
        }));
    }

    /// Fold BPF's cumulative per-class CPU time into the share window.
    /// `decay` in (0, 1]: the weight kept of the past (called periodically).
    pub fn account(&mut self, cumulative_ns: [u64; NR_CLASSES], decay: f64) {
        for ((window, last), now) in self
            .window
            .iter_mut()
            .zip(&mut self.last_runtime)
            .zip(cumulative_ns)
        {
            *window = *window * decay + now.saturating_sub(*last) as f64;
            *last = now;
        }
    }

    /// Share of recent CPU time used by normal+batch (unset counts as normal).
    pub fn non_critical_share(&self) -> f64 {
        let total: f64 = self.window.iter().sum();
        if total <= 0.0 {
            return 1.0;
        }
        1.0 - self.window[CRITICAL] / total
    }

    /// Normal+batch got less than their minimum share lately.
    pub fn lower_classes_starving(&self) -> bool {
        self.non_critical_share() * 100.0 < self.t.min_share_pct as f64
    }

    fn batch_share_of_non_critical(&self) -> f64 {
        let nc = self.window[UNSET] + self.window[NORMAL] + self.window[BATCH];
        if nc <= 0.0 {
            return 1.0;
        }
        self.window[BATCH] / nc
    }

    /// Which run queue goes next.
    fn pick_queue(&self) -> Option<usize> {
        let has = |q: usize| !self.queues[q].is_empty();
        let batch_owed = has(BATCH)
            && self.batch_share_of_non_critical() * 100.0 < self.t.batch_min_share_pct as f64;
        let non_critical = if batch_owed || !has(NORMAL) {
            has(BATCH).then_some(BATCH)
        } else {
            Some(NORMAL)
        };
        if has(CRITICAL) {
            let owed = non_critical.is_some()
                && self.non_critical_share() * 100.0 < self.t.min_share_pct as f64;
            if !owed {
                return Some(CRITICAL);
            }
        }
        non_critical.or_else(|| QUEUES.into_iter().find(|&q| has(q)))
    }

    /// The next decision, if any task waits.
    pub fn next(&mut self, nr_cpus: u64) -> Option<Decision> {
        let (q, e) = match self.take_starving() {
            // released by age, not by order: it does not move the clock
            Some(starving) => starving,
            None => {
                let q = self.pick_queue()?;
                let Reverse(e) = self.queues[q].pop()?;
                self.clock[q] = self.clock[q].max(e.vruntime);
                (q, e)
            }
        };
        self.dispatch_seq += 1;
        let dsq_vtime = if q == CRITICAL {
            self.dispatch_seq - CRITICAL_JUMP
        } else {
            self.dispatch_seq
        };
        // the more tasks wait for the CPUs, the sooner each gets its turn
        let waiting = self.waiting() as u64;
        let base = (self.t.slice_ns * nr_cpus / (nr_cpus + waiting)).max(self.t.slice_min_ns);
        let slice_ns = if q == BATCH {
            base * self.t.batch_slice_factor
        } else {
            base
        };
        // Pinned tasks go to their CPU's queue; others to the first free CPU.
        let cpu =
            (e.task.nr_cpus_allowed < nr_cpus || e.task.nr_cpus_allowed == 1).then_some(e.task.cpu);
        Some(Decision {
            pid: e.task.pid,
            cpu,
            flags: e.task.flags,
            slice_ns,
            dsq_vtime,
            vruntime: e.vruntime,
            enq_cnt: e.task.enq_cnt,
            class: q,
            task: e.task,
        })
    }

    /// Put back a decision that could not be sent (ring buffer full): it
    /// goes first in its class next time.
    pub fn requeue(&mut self, d: &Decision) {
        self.queues[d.class].push(Reverse(Queued {
            deadline: 0,
            seq: 0,
            task: d.task,
            vruntime: d.vruntime,
            queued_at: self.now,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pid: i32, class: usize) -> Runnable {
        Runnable {
            pid,
            nr_cpus_allowed: 2,
            enq_cnt: 1,
            class: class as u32,
            nice_weight: 100,
            cgroup_weight: 100,
            ..Default::default()
        }
    }

    fn drain(p: &mut Policy) -> Vec<(i32, usize)> {
        std::iter::from_fn(|| p.next(2).map(|d| (d.pid, d.class))).collect()
    }

    #[test]
    fn critical_before_normal_before_batch() {
        let mut p = Policy::new(Tunables::default(), 16);
        p.enqueue(task(3, BATCH));
        p.enqueue(task(2, NORMAL));
        p.enqueue(task(4, UNSET));
        p.enqueue(task(1, CRITICAL));
        assert_eq!(
            drain(&mut p),
            vec![(1, CRITICAL), (2, NORMAL), (4, NORMAL), (3, BATCH)]
        );
    }

    #[test]
    fn critical_decisions_jump_ahead_of_earlier_ones() {
        let mut p = Policy::new(Tunables::default(), 16);
        p.enqueue(task(1, BATCH));
        let batch = p.next(2).unwrap();
        p.enqueue(task(2, CRITICAL));
        let crit = p.next(2).unwrap();
        assert!(crit.dsq_vtime < batch.dsq_vtime);
        assert!(batch.slice_ns > crit.slice_ns);
    }

    #[test]
    fn slices_shrink_with_the_tasks_waiting_down_to_the_floor() {
        let t = Tunables::default();
        let mut p = Policy::new(t.clone(), 64);
        p.enqueue(task(1, NORMAL));
        assert_eq!(p.next(2).unwrap().slice_ns, t.slice_ns, "nobody waits");
        for pid in 0..3 {
            p.enqueue(task(pid, NORMAL));
        }
        // two still waiting behind the one taken, on 2 CPUs: half the slice
        assert_eq!(p.next(2).unwrap().slice_ns, t.slice_ns / 2);
        for pid in 0..60 {
            p.enqueue(task(pid, NORMAL));
        }
        assert_eq!(p.next(2).unwrap().slice_ns, t.slice_min_ns);
    }

    #[test]
    fn interactive_tasks_go_before_hogs_of_their_class() {
        let mut p = Policy::new(Tunables::default(), 16);
        let mut hog = task(1, NORMAL);
        hog.exec_runtime = 40_000_000;
        hog.last_ran_ns = 5_000_000;
        hog.vruntime = 1;
        let mut sleeper = task(2, NORMAL);
        sleeper.exec_runtime = 100_000;
        sleeper.last_ran_ns = 100_000;
        sleeper.vruntime = 1;
        p.enqueue(hog);
        p.enqueue(sleeper);
        assert_eq!(p.next(2).unwrap().pid, 2);
    }

    #[test]
    fn a_task_queued_a_second_goes_next_without_moving_the_clock() {
        let mut p = Policy::new(Tunables::default(), 16);
        p.tick(1);
        // owes 100 s of vruntime (a cpu.weight 1 task after a few slices)
        let mut light = task(1, NORMAL);
        light.vruntime = 100_000_000_000;
        p.enqueue(light);
        for (pid, at) in [(2, 10_000_000), (3, 500_000_000)] {
            p.tick(at);
            let mut t = task(pid, NORMAL);
            t.vruntime = 1_000_000;
            p.enqueue(t);
        }
        p.tick(600_000_000);
        assert_eq!(p.next(2).unwrap().pid, 2, "by deadline while young");
        p.tick(1_000_000_001);
        assert_eq!(p.next(2).unwrap().pid, 1, "after STARVE_NS, by age");
        assert_eq!(p.next(2).unwrap().pid, 3);
        assert!(p.clock[NORMAL] < 100_000_000_000, "the clock did not jump");
    }

    #[test]
    fn weights_scale_vruntime() {
        let mut heavy = task(1, NORMAL);
        heavy.bus_weight = 127;
        heavy.cgroup_weight = 200;
        let light = task(2, NORMAL);
        assert_eq!(effective_weight(&light), 100);
        assert_eq!(effective_weight(&heavy), 100 * 200 * 127 / 6400);
        let mut p = Policy::new(Tunables::default(), 16);
        for t in [heavy, light] {
            let mut t = t;
            t.vruntime = 1_000_000;
            t.last_ran_ns = 10_000_000;
            p.enqueue(t);
        }
        let first = p.next(2).unwrap();
        let second = p.next(2).unwrap();
        assert_eq!(first.pid, 1, "the heavier task's vruntime grew less");
        assert!(second.vruntime - 1_000_000 > 3 * (first.vruntime - 1_000_000));
    }

    #[test]
    fn non_critical_work_is_owed_its_minimum_share() {
        let mut p = Policy::new(Tunables::default(), 16);
        // Critical used 90% of the CPU lately.
        p.account([0, 900, 100, 0], 1.0);
        p.enqueue(task(1, CRITICAL));
        p.enqueue(task(2, NORMAL));
        assert_eq!(p.next(2).unwrap().pid, 2, "normal is below its 25% share");
        // With its share restored, critical goes first again.
        p.account([0, 1000, 600, 0], 1.0);
        p.enqueue(task(3, NORMAL));
        assert_eq!(p.next(2).unwrap().pid, 1);
    }

    #[test]
    fn batch_is_owed_a_share_of_non_critical_time() {
        let mut p = Policy::new(Tunables::default(), 16);
        p.account([0, 0, 1000, 50], 1.0);
        p.enqueue(task(1, NORMAL));
        p.enqueue(task(2, BATCH));
        assert_eq!(p.next(2).unwrap().pid, 2, "batch got 5% < 10%");
    }

    #[test]
    fn empty_bus_is_one_fair_queue() {
        let mut p = Policy::new(Tunables::default(), 16);
        for pid in 1..=3 {
            let mut t = task(pid, UNSET);
            t.vruntime = 1_000 * pid as u64;
            t.last_ran_ns = 0;
            p.enqueue(t);
        }
        assert_eq!(
            drain(&mut p).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn sleepers_keep_at_most_one_slice_of_credit() {
        let mut p = Policy::new(Tunables::default(), 16);
        let mut runner = task(1, NORMAL);
        runner.vruntime = 100_000_000;
        p.enqueue(runner);
        p.next(2);
        let mut sleeper = task(2, NORMAL);
        sleeper.vruntime = 1;
        sleeper.woke = true;
        p.enqueue(sleeper);
        let d = p.next(2).unwrap();
        assert_eq!(d.vruntime, 100_000_000 - Tunables::default().slice_ns);
    }

    #[test]
    fn runnable_tasks_keep_their_lag() {
        let mut p = Policy::new(Tunables::default(), 16);
        let mut runner = task(1, NORMAL);
        runner.vruntime = 100_000_000;
        p.enqueue(runner);
        p.next(2);
        let mut behind = task(2, NORMAL);
        behind.vruntime = 1;
        p.enqueue(behind);
        assert_eq!(p.next(2).unwrap().vruntime, 1, "no clamp without a sleep");
    }

    #[test]
    fn pinned_tasks_keep_their_cpu() {
        let mut p = Policy::new(Tunables::default(), 16);
        let mut t = task(1, NORMAL);
        t.nr_cpus_allowed = 1;
        t.cpu = 1;
        p.enqueue(t);
        p.enqueue(task(2, NORMAL));
        assert_eq!(p.next(2).unwrap().cpu, Some(1));
        assert_eq!(p.next(2).unwrap().cpu, None);
    }
}
