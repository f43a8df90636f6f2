//! prism-probe: measure wakeup latency the way a latency-critical service
//! feels it; at the end it prints one JSON line with the percentiles.
//!
//! Timer mode (default): a thread sleeps until an absolute deadline every
//! interval, records how late it woke, does a little work, and repeats. The
//! figure includes the timer's own delivery delay.
//!
//! Request mode (`--workers N`): a dispatcher thread, on the same timer,
//! hands a request to the next of N worker threads; each worker records the
//! time from the hand-off to its running, then works. The figure is the
//! scheduler's wakeup latency alone, as a server's worker pool sees it.
//! With `--from-arrival` each worker records instead the time from the
//! tick's deadline (the request's arrival) to its running: the dispatcher's
//! own wakeup counts too, as it does for a server whose requests arrive by
//! interrupt. Probes of different classes run side by side need this: the
//! hand-off alone hides a dispatcher that waited for a slice. Requests
//! arrive on time then, however late the dispatcher wakes: it hands out on
//! waking one for each deadline it missed, each timed from its own.
//! `--cpu-work` makes the work CPU time (a CPU-bound service), not wall
//! time (which a preempted worker would count as done).
//!
//!     prism-probe --interval-us 2000 --work-us 200 --duration-s 5
//!     prism-probe --workers 2 --interval-us 2000 --work-us 300 --duration-s 5

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use prism_bench::timing::{monotonic_ns, sleep_until, spin_cpu_for, spin_for};
use prism_testkit::latency::Summary;

#[derive(Parser)]
#[command(
    about = "Wakeup-latency probe: sleep to absolute deadlines, report lateness percentiles as JSON"
)]
struct Opts {
    /// Period between wakeups, microseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..=1_000_000))]
    interval_us: u64,
    /// Busy work after each wakeup, microseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    work_us: u64,
    /// How long to measure, seconds.
    #[arg(long, default_value_t = 5.0)]
    duration_s: f64,
    /// Worker threads woken by a dispatcher (request mode); 0: timer mode.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=64))]
    workers: u64,
    /// Request mode: measure from each request's arrival (the tick's
    /// deadline), not from its hand-off to the worker.
    #[arg(long, requires = "workers")]
    from_arrival: bool,
    /// Work is CPU time, not wall time: a request costs --work-us of the
    /// worker's CPU however often it is preempted (a CPU-bound service).
    #[arg(long)]
    cpu_work: bool,
    /// Label printed with the result.
    #[arg(long, default_value = "probe")]
    label: String,
}

fn main() -> Result<()> {
    let o = Opts::parse();
    if !(o.duration_s > 0.0 && o.duration_s.is_finite()) {
        bail!("--duration-s must be a positive number");
    }
    let interval = o.interval_us * 1000;
    let end = monotonic_ns() + (o.duration_s * 1e9) as u64;
    let work = Work {
        d: Duration::from_micros(o.work_us),
        cpu: o.cpu_work,
    };
    let mut samples = if o.workers == 0 {
        timer_mode(interval, end, work)
    } else {
        request_mode(o.workers as usize, interval, end, work, o.from_arrival)
    };
    let s = Summary::of(&mut samples);
    println!("{}", serde_json::json!({ "label": o.label, "summary": s }));
    Ok(())
}

/// A request's busy work: wall time, or the thread's CPU time.
#[derive(Clone, Copy)]
struct Work {
    d: Duration,
    cpu: bool,
}

impl Work {
    fn run(self) {
        if self.cpu {
            spin_cpu_for(self.d)
        } else {
            spin_for(self.d)
        }
    }
}

/// Deadlines every `interval` until `end`, calling `tick` at each. With
/// `catch_up` every deadline passed while the thread waited is ticked on
/// waking (requests arrive whether or not the dispatcher runs: dropping
/// them would hide the wait of the ones behind, coordinated omission);
/// without, late wakeups do not pile up (a periodic task skips the ticks it
/// missed) and the next deadline is always in the future.
fn every(interval: u64, end: u64, catch_up: bool, mut tick: impl FnMut(u64)) {
    let mut next = monotonic_ns() + interval;
    while next < end {
        sleep_until(next);
        tick(next);
        next += interval;
        let now = monotonic_ns();
        if catch_up {
            while next <= now.min(end) {
                tick(next);
                next += interval;
            }
        } else if next <= now {
            next = now + interval;
        }
    }
}

fn timer_mode(interval: u64, end: u64, work: Work) -> Vec<u64> {
    let mut samples = Vec::new();
    every(interval, end, false, |deadline| {
        samples.push(monotonic_ns().saturating_sub(deadline));
        work.run();
    });
    samples
}

fn request_mode(
    workers: usize,
    interval: u64,
    end: u64,
    work: Work,
    from_arrival: bool,
) -> Vec<u64> {
    let (senders, handles): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| {
            let (tx, rx) = mpsc::channel::<u64>();
            let worker = thread::spawn(move || {
                let mut samples = Vec::new();
                for sent in rx {
                    samples.push(monotonic_ns().saturating_sub(sent));
                    work.run();
                }
                samples
            });
            (tx, worker)
        })
        .unzip();
    let mut next_worker = 0;
    every(interval, end, from_arrival, |deadline| {
        let start = if from_arrival {
            deadline
        } else {
            monotonic_ns()
        };
        // a worker still busy with its last request just queues this one
        let _ = senders[next_worker].send(start);
        next_worker = (next_worker + 1) % workers;
    });
    drop(senders);
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("probe worker"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deadlines ticked when the first tick overruns 5 intervals.
    fn ticks(catch_up: bool) -> Vec<u64> {
        let interval = 1_000_000;
        let end = monotonic_ns() + 20 * interval;
        let mut seen = Vec::new();
        every(interval, end, catch_up, |deadline| {
            if seen.is_empty() {
                thread::sleep(Duration::from_millis(5));
            }
            seen.push(deadline);
        });
        seen
    }

    #[test]
    fn requests_missed_while_the_dispatcher_waited_still_arrive() {
        let t = ticks(true);
        assert!(t.len() >= 18, "{} ticks", t.len());
        assert!(t.windows(2).all(|w| w[1] - w[0] == 1_000_000), "{t:?}");
        // a periodic task skips what it missed instead
        let t = ticks(false);
        assert!(t.windows(2).any(|w| w[1] - w[0] > 4_000_000), "{t:?}");
        assert!(t.len() < 18, "{} ticks", t.len());
    }
}
