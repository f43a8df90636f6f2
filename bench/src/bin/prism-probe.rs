//! prism-probe: measure wakeup latency the way a latency-critical service
//! feels it. A thread sleeps until an absolute deadline every interval,
//! records how late it woke, does a little work, and repeats; at the end it
//! prints one JSON line with the percentiles.
//!
//!     prism-probe --interval-us 2000 --work-us 200 --duration-s 5

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use prism_bench::latency::Summary;

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
    /// Label printed with the result.
    #[arg(long, default_value = "probe")]
    label: String,
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn sleep_until(ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: ts is valid; a null remainder is allowed with TIMER_ABSTIME.
    while unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    } == libc::EINTR
    {}
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn main() -> Result<()> {
    let o = Opts::parse();
    if !(o.duration_s > 0.0 && o.duration_s.is_finite()) {
        bail!("--duration-s must be a positive number");
    }
    let interval = o.interval_us * 1000;
    let end = monotonic_ns() + (o.duration_s * 1e9) as u64;
    let mut samples = Vec::with_capacity((o.duration_s * 1e9 / interval as f64) as usize + 1);
    let mut next = monotonic_ns() + interval;
    while next < end {
        sleep_until(next);
        let woke = monotonic_ns();
        samples.push(woke.saturating_sub(next));
        spin(Duration::from_micros(o.work_us));
        // Late wakeups do not pile up: the next deadline is in the future.
        next += interval;
        let now = monotonic_ns();
        if next <= now {
            next = now + interval;
        }
    }
    let s = Summary::of(&mut samples);
    println!("{}", serde_json::json!({ "label": o.label, "summary": s }));
    Ok(())
}
