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
//! hand-off alone hides a dispatcher that waited for a slice.
//!
//!     prism-probe --interval-us 2000 --work-us 200 --duration-s 5
//!     prism-probe --workers 2 --interval-us 2000 --work-us 300 --duration-s 5

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use prism_bench::latency::Summary;
use prism_bench::timing::{monotonic_ns, sleep_until, spin_for};

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
    let work = Duration::from_micros(o.work_us);
    let mut samples = if o.workers == 0 {
        timer_mode(interval, end, work)
    } else {
        request_mode(o.workers as usize, interval, end, work, o.from_arrival)
    };
    let s = Summary::of(&mut samples);
    println!("{}", serde_json::json!({ "label": o.label, "summary": s }));
    Ok(())
}

/// Deadlines every `interval` until `end`, calling `tick` at each; late
/// wakeups do not pile up: the next deadline is always in the future.
fn every(interval: u64, end: u64, mut tick: impl FnMut(u64)) {
    let mut next = monotonic_ns() + interval;
    while next < end {
        sleep_until(next);
        tick(next);
        next += interval;
        let now = monotonic_ns();
        if next <= now {
            next = now + interval;
        }
    }
}

fn timer_mode(interval: u64, end: u64, work: Duration) -> Vec<u64> {
    let mut samples = Vec::new();
    every(interval, end, |deadline| {
        samples.push(monotonic_ns().saturating_sub(deadline));
        spin_for(work);
    });
    samples
}

fn request_mode(
    workers: usize,
    interval: u64,
    end: u64,
    work: Duration,
    from_arrival: bool,
) -> Vec<u64> {
    let (senders, handles): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| {
            let (tx, rx) = mpsc::channel::<u64>();
            let worker = thread::spawn(move || {
                let mut samples = Vec::new();
                for sent in rx {
                    samples.push(monotonic_ns().saturating_sub(sent));
                    spin_for(work);
                }
                samples
            });
            (tx, worker)
        })
        .unzip();
    let mut next_worker = 0;
    every(interval, end, |deadline| {
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
