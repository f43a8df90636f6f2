//! An event as the kernel sent it, decoded, and the two ways of printing
//! it: a JSON object per line (for tools), a table row (for people).
//! comm and filename come from the traced program: they are printed
//! escaped, never raw.

use prism_bus::record::{BootClock, c_string};
use prism_bus::{Flags, LatencyClass};
use serde::Serialize;

use crate::bpf::intf::{
    prism_trace_event, prism_trace_kind_TRACE_EXEC as TRACE_EXEC,
    prism_trace_kind_TRACE_EXIT as TRACE_EXIT,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub time: String,
    pub event: &'static str,
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<i32>,
    pub cgroup_id: u64,
    pub identity: u32,
    pub workload: Option<String>,
    pub class: &'static str,
}

/// Turns kernel records into events: boot-clock times into wall-clock ones.
#[derive(Default)]
pub struct Decoder {
    clock: BootClock,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            clock: BootClock::new(),
        }
    }

    /// `None` for a record that is not an event of this build.
    pub fn decode(&self, bytes: &[u8], name: impl Fn(u32) -> Option<String>) -> Option<Event> {
        if bytes.len() != size_of::<prism_trace_event>() {
            return None;
        }
        // SAFETY: the size is checked and the record is plain data.
        let e: prism_trace_event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let (event, filename, exit_code, exit_signal) = match e.kind {
            TRACE_EXEC => ("exec", Some(c_string(&e.filename)), None, None),
            TRACE_EXIT => {
                let status = e.exit_code;
                let signal = status & 0x7f;
                if signal == 0 {
                    ("exit", None, Some((status >> 8) & 0xff), None)
                } else {
                    ("exit", None, None, Some(signal))
                }
            }
            _ => return None,
        };
        let class = Flags::decode(e.flags)
            .map(|f| f.class)
            .unwrap_or(LatencyClass::Unset);
        let wall = self.clock.wall(e.time_ns);
        Some(Event {
            time: humantime::format_rfc3339_micros(wall).to_string(),
            event,
            pid: e.pid,
            ppid: e.ppid,
            comm: c_string(&e.comm),
            filename,
            exit_code,
            exit_signal,
            cgroup_id: e.cgroup_id,
            identity: e.identity,
            workload: name(e.identity),
            class: class.name(),
        })
    }
}

/// The table's header line.
pub const TABLE_HEADER: &str = "TIME            EVENT   PID     PPID    IDENTITY  CLASS     WORKLOAD              COMM             DETAIL";

/// One table row (control characters escaped).
pub fn table_row(e: &Event) -> String {
    let detail = match (&e.filename, e.exit_code, e.exit_signal) {
        (Some(f), _, _) => f.clone(),
        (_, Some(code), _) => format!("exit {code}"),
        (_, _, Some(sig)) => format!("signal {sig}"),
        _ => String::new(),
    };
    let time = e.time.get(11..23).unwrap_or(&e.time);
    format!(
        "{time:<15} {:<7} {:<7} {:<7} {:<9} {:<9} {:<21} {:<16} {}",
        e.event,
        e.pid,
        e.ppid,
        e.identity,
        e.class,
        escaped(e.workload.as_deref().unwrap_or("-")),
        escaped(&e.comm),
        escaped(&detail)
    )
}

fn escaped(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, exit_code: i32, comm: &str, filename: &str) -> Vec<u8> {
        let mut e: prism_trace_event = unsafe { std::mem::zeroed() };
        e.kind = kind;
        e.pid = 42;
        e.ppid = 1;
        e.identity = 300;
        e.flags = (LatencyClass::Critical as u32) << prism_bus::abi::CLASS_SHIFT;
        e.exit_code = exit_code;
        for (d, s) in e.comm.iter_mut().zip(comm.bytes()) {
            *d = s as std::os::raw::c_char;
        }
        for (d, s) in e.filename.iter_mut().zip(filename.bytes()) {
            *d = s as std::os::raw::c_char;
        }
        let p = (&e as *const prism_trace_event).cast::<u8>();
        unsafe { std::slice::from_raw_parts(p, size_of::<prism_trace_event>()) }.to_vec()
    }

    #[test]
    fn exec_and_exit_records_decode() {
        let d = Decoder::new();
        let name = |id| (id == 300).then(|| "shop/web".to_string());
        let exec = d
            .decode(&record(TRACE_EXEC, 0, "true", "/bin/true"), name)
            .unwrap();
        assert_eq!(
            (exec.event, exec.filename.as_deref(), exec.class),
            ("exec", Some("/bin/true"), "critical")
        );
        assert_eq!(exec.workload.as_deref(), Some("shop/web"));
        let json = serde_json::to_string(&exec).unwrap();
        assert!(
            json.contains(r#""event":"exec""#) && !json.contains("exit_code"),
            "{json}"
        );
        let exit = d
            .decode(&record(TRACE_EXIT, 3 << 8, "sh", ""), name)
            .unwrap();
        assert_eq!((exit.exit_code, exit.exit_signal), (Some(3), None));
        let killed = d.decode(&record(TRACE_EXIT, 9, "sh", ""), name).unwrap();
        assert_eq!((killed.exit_code, killed.exit_signal), (None, Some(9)));
        assert!(d.decode(&[0u8; 10], name).is_none());
        assert!(d.decode(&record(7, 0, "", ""), name).is_none());
    }

    #[test]
    fn hostile_names_are_escaped_in_the_table_and_json() {
        let d = Decoder::new();
        let e = d
            .decode(&record(TRACE_EXEC, 0, "x\x1b[2J", "/tmp/a\nb"), |_| None)
            .unwrap();
        let row = table_row(&e);
        assert!(!row.chars().any(|c| c.is_control()), "{row:?}");
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r"a\nb") && json.contains(r"\u001b"), "{json}");
    }
}
