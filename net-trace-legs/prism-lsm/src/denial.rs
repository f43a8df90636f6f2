//! A denial as the kernel reported it, decoded for printing as a JSON line.
//! comm and path come from the denied program: JSON escapes them.

use prism_bus::record::{BootClock, c_string};
use serde::Serialize;

use crate::bpf::intf::prism_lsm_denial;
use crate::rules::Mode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    pub time: String,
    pub event: &'static str,
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// The file refused, as d_path names it in the process's root.
    pub path: String,
    pub cgroup_id: u64,
    pub identity: u32,
    pub workload: Option<String>,
    /// `allow-listed` (the file is not on the list) or `deny-listed` (it is).
    pub mode: &'static str,
    /// The identity's denials since prism-lsm started, this one included.
    pub denials: u64,
}

/// `None` for a record that is not a denial of this build.
pub fn decode(
    clock: &BootClock,
    bytes: &[u8],
    name: impl Fn(u32) -> Option<String>,
) -> Option<Denial> {
    if bytes.len() != size_of::<prism_lsm_denial>() {
        return None;
    }
    // SAFETY: the size is checked and the record is plain data.
    let d: prism_lsm_denial = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    Some(Denial {
        time: humantime::format_rfc3339_micros(clock.wall(d.time_ns)).to_string(),
        event: "denied",
        pid: d.pid,
        ppid: d.ppid,
        comm: c_string(&d.comm),
        path: c_string(&d.path),
        cgroup_id: d.cgroup_id,
        identity: d.identity,
        workload: name(d.identity),
        mode: Mode::from_raw(d.mode)?.name(),
        denials: d.denials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mode: u32, comm: &str, path: &str) -> Vec<u8> {
        // SAFETY: all-zero is a valid record.
        let mut d: prism_lsm_denial = unsafe { std::mem::zeroed() };
        d.pid = 42;
        d.identity = 300;
        d.mode = mode;
        d.denials = 3;
        for (dst, s) in d.comm.iter_mut().zip(comm.bytes()) {
            *dst = s as _;
        }
        for (dst, s) in d.path.iter_mut().zip(path.bytes()) {
            *dst = s as _;
        }
        let p = (&d as *const prism_lsm_denial).cast::<u8>();
        // SAFETY: reading the record's own bytes.
        unsafe { std::slice::from_raw_parts(p, size_of::<prism_lsm_denial>()) }.to_vec()
    }

    #[test]
    fn denials_decode_and_escape() {
        let c = BootClock::new();
        let name = |id| (id == 300).then(|| "shop/web".to_string());
        let d = decode(
            &c,
            &record(Mode::DenyListed.raw(), "sh", "/usr/bin/curl"),
            name,
        )
        .unwrap();
        assert_eq!(
            (d.path.as_str(), d.mode, d.denials, d.workload.as_deref()),
            ("/usr/bin/curl", "deny-listed", 3, Some("shop/web"))
        );
        let json = serde_json::to_string(
            &decode(
                &c,
                &record(Mode::AllowListed.raw(), "x\x1b", "/tmp/a\nb"),
                name,
            )
            .unwrap(),
        )
        .unwrap();
        assert!(json.contains(r"a\nb") && json.contains(r"\u001b"), "{json}");
        assert!(decode(&c, &record(9, "sh", "/x"), name).is_none());
        assert!(decode(&c, &[0; 8], name).is_none());
    }
}
