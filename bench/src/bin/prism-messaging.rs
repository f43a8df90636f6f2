//! prism-messaging: a messaging throughput load, the kind a broker or a
//! chatty microservice mesh puts on a node: groups of sender and receiver
//! threads over pipes, every sender of a group writing small messages to
//! every receiver of it, nothing else running. Wakeups dominate (a full pipe
//! blocks its senders, an empty one its receiver), so what it measures is
//! how fast a scheduler moves many short-lived wakeups, not latency at the
//! tail. It prints one JSON line: the time from the first thread starting to
//! the last finishing (each thread reads the clock itself, so a main thread
//! the scheduler happens to run late changes nothing), how many threads
//! took part, and how many messages a receiver's read found on average (the
//! batching the scheduler allowed: fewer per read means more reads, wakeups
//! and context switches for the same messages).
//!
//!     prism-messaging --groups 4 --senders 20 --receivers 20 --messages 200

use prism_bench::timing::monotonic_ns;
use std::io::{Read, Write, pipe};
use std::sync::{Arc, Barrier};
use std::thread;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser)]
#[command(
    about = "Messaging load: groups of senders and receivers over pipes; prints the time taken as JSON"
)]
struct Opts {
    /// Independent groups.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    groups: u64,
    /// Sender threads per group.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100))]
    senders: u64,
    /// Receiver threads per group (one pipe each).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100))]
    receivers: u64,
    /// Messages each sender writes to each receiver of its group.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    messages: u64,
    /// Bytes per message (at most one atomic pipe write).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=4096))]
    size: u64,
    /// Label printed with the result.
    #[arg(long, default_value = "messaging")]
    label: String,
}

fn main() -> Result<()> {
    let o = Opts::parse();
    let threads = o.groups * (o.senders + o.receivers);
    let start = Arc::new(Barrier::new(threads as usize + 1));
    let mut handles = vec![];
    for _ in 0..o.groups {
        let mut writers = vec![];
        for _ in 0..o.receivers {
            let (mut reader, writer) = pipe().context("a pipe")?;
            writers.push(writer);
            let want = (o.senders * o.messages * o.size) as usize;
            let start = start.clone();
            handles.push(thread::spawn(
                move || -> std::io::Result<(u64, u64, u64)> {
                    let mut buf = vec![0u8; 4096];
                    start.wait();
                    let began = monotonic_ns();
                    let (mut got, mut reads) = (0, 0);
                    while got < want {
                        reads += 1;
                        match reader.read(&mut buf)? {
                            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                            n => got += n,
                        }
                    }
                    Ok((began, monotonic_ns(), reads))
                },
            ));
        }
        // one descriptor per pipe end, shared by the group's senders (a
        // message is one write, atomic below PIPE_BUF)
        let writers = Arc::new(writers);
        for _ in 0..o.senders {
            let (messages, message) = (o.messages, vec![b'm'; o.size as usize]);
            let (start, writers) = (start.clone(), writers.clone());
            handles.push(thread::spawn(
                move || -> std::io::Result<(u64, u64, u64)> {
                    start.wait();
                    let began = monotonic_ns();
                    for _ in 0..messages {
                        for mut w in writers.iter() {
                            w.write_all(&message)?;
                        }
                    }
                    Ok((began, monotonic_ns(), 0))
                },
            ));
        }
    }
    start.wait();
    let (mut first, mut last, mut reads) = (u64::MAX, 0, 0);
    for h in handles {
        let (began, ended, n) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a thread panicked"))?
            .context("a sender or receiver")?;
        first = first.min(began);
        last = last.max(ended);
        reads += n;
    }
    let seconds = last.saturating_sub(first) as f64 / 1e9;
    let messages = o.groups * o.senders * o.receivers * o.messages;
    println!(
        "{}",
        serde_json::json!({
            "label": o.label,
            "seconds": seconds,
            "threads": threads,
            // how many messages a receiver's read found waiting: the load's batching
            "messages_per_read": messages as f64 / reads.max(1) as f64,
        })
    );
    Ok(())
}
