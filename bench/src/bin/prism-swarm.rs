//! prism-swarm: a node at the edge, for a scheduler's robustness. Thousands
//! of always-runnable threads, a steady stream of forks, and optionally a
//! SCHED_FIFO hog; each thread reads the clock in a loop, so the longest gap
//! between two of its reads is the longest it waited runnable. Prints one
//! JSON line: threads, forks done (and per second), the longest wait of any
//! thread and the 99th percentile of the threads' longest waits.
//!
//!     prism-swarm --threads 5000 --forks-per-s 1000 --duration-s 60 --fifo-hog-s 10

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use prism_bench::timing::monotonic_ns;

#[derive(Parser)]
#[command(
    about = "Thousands of runnable threads, a fork stream and a SCHED_FIFO hog; prints the longest runnable wait as JSON"
)]
struct Opts {
    /// Always-runnable threads.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=50_000))]
    threads: u64,
    /// Forks (each child exits at once) per second, from one thread.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    forks_per_s: u64,
    /// How long, seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_s: u64,
    /// A SCHED_FIFO (priority 1) thread spinning this many seconds, from a
    /// third of the run; 0: none.
    #[arg(long, default_value_t = 0)]
    fifo_hog_s: u64,
}

/// Spin reading the clock until `stop`; the longest gap between two reads.
fn spin(stop: &AtomicBool) -> u64 {
    let (mut last, mut longest) = (monotonic_ns(), 0);
    while !stop.load(Ordering::Relaxed) {
        let now = monotonic_ns();
        longest = longest.max(now - last);
        last = now;
    }
    longest
}

/// Fork `per_s` children a second (each exits at once) until `stop`.
fn fork_stream(per_s: u64, stop: &AtomicBool) -> u64 {
    if per_s == 0 {
        return 0;
    }
    let period = 1_000_000_000 / per_s;
    let (start, mut forks) = (monotonic_ns(), 0u64);
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: the child calls only _exit; the parent waits for it.
        let pid = unsafe { libc::fork() };
        match pid {
            0 => unsafe { libc::_exit(0) },
            p if p > 0 => {
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(p, std::ptr::null_mut(), 0) };
                forks += 1;
            }
            _ => thread::sleep(Duration::from_millis(1)),
        }
        let due = start + forks * period;
        let now = monotonic_ns();
        if due > now {
            thread::sleep(Duration::from_nanos(due - now));
        }
    }
    forks
}

fn fifo_hog(after: Duration, for_: Duration) -> Result<()> {
    thread::sleep(after);
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: this thread's own policy, a valid parameter.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        bail!("SCHED_FIFO: {}", std::io::Error::last_os_error());
    }
    let end = monotonic_ns() + for_.as_nanos() as u64;
    while monotonic_ns() < end {
        std::hint::spin_loop();
    }
    Ok(())
}

fn main() -> Result<()> {
    let o = Opts::parse();
    let stop = Arc::new(AtomicBool::new(false));
    // Every spinner waits (asleep) until all exist: spinners started one by
    // one would starve the thread that starts the rest.
    let ready = Arc::new(Barrier::new(o.threads as usize + 1));
    let mut spinners = Vec::with_capacity(o.threads as usize);
    for _ in 0..o.threads {
        let (stop, ready) = (stop.clone(), ready.clone());
        spinners.push(thread::Builder::new().stack_size(64 << 10).spawn(move || {
            ready.wait();
            spin(&stop)
        })?);
    }
    ready.wait();
    let forker = {
        let stop = stop.clone();
        let per_s = o.forks_per_s;
        thread::spawn(move || fork_stream(per_s, &stop))
    };
    let hog = (o.fifo_hog_s > 0).then(|| {
        let (after, for_) = (
            Duration::from_secs(o.duration_s / 3),
            Duration::from_secs(o.fifo_hog_s),
        );
        thread::spawn(move || fifo_hog(after, for_))
    });
    thread::sleep(Duration::from_secs(o.duration_s));
    stop.store(true, Ordering::Relaxed);
    let mut longest: Vec<u64> = spinners
        .into_iter()
        .map(|h| h.join().expect("a spinner panicked"))
        .collect();
    let forks = forker.join().expect("the forker panicked");
    if let Some(h) = hog {
        h.join().expect("the hog panicked")?;
    }
    longest.sort_unstable();
    let p99 = longest[(longest.len() * 99 / 100).min(longest.len() - 1)];
    println!(
        "{}",
        serde_json::json!({
            "threads": o.threads,
            "duration_s": o.duration_s,
            "forks": forks,
            "forks_per_s": forks as f64 / o.duration_s as f64,
            "fifo_hog_s": o.fifo_hog_s,
            "longest_wait_ms": *longest.last().unwrap() as f64 / 1e6,
            "p99_longest_wait_ms": p99 as f64 / 1e6,
        })
    );
    Ok(())
}
