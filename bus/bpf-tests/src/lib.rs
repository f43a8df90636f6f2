//! The bus probe: a BPF test consumer of `prism/bus.bpf.h`, for the real-kernel
//! tests in `tests/`. Nothing here is shipped.

#[allow(clippy::all, dead_code, non_camel_case_types, non_snake_case)]
pub mod bus_probe {
    include!(concat!(env!("OUT_DIR"), "/bus_probe_skel.rs"));
}

/// Driving the probe from a test: watch a process, make it run syscalls,
/// read what the probe resolved for it.
pub mod probe {
    use std::io::{BufRead, BufReader, Write};
    use std::mem::MaybeUninit;
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

    use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
    use libbpf_rs::{MapCore, MapFlags, OpenObject};
    use prism_bus::consumer::{SlotChange, SlotKeeper};

    use super::bus_probe::{BusProbeSkel, BusProbeSkelBuilder, OpenBusProbeSkel};

    pub const SRC_MISS: u32 = 0;
    pub const SRC_OWN: u32 = 1;
    pub const SRC_ANCESTOR: u32 = 2;

    /// What observe_sys_enter last saw for a process (struct observation).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Observation {
        pub cgroup_id: u64,
        pub generation: u64,
        pub identity: u32,
        pub flags: u32,
        pub source: u32,
        pub calls: u64,
        pub resolutions: u64,
    }

    impl Observation {
        pub fn from_bytes(b: &[u8]) -> Self {
            let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
            let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
            Observation {
                cgroup_id: u64_at(0),
                generation: u64_at(8),
                identity: u32_at(16),
                flags: u32_at(20),
                source: u32_at(24),
                calls: u64_at(32),
                resolutions: u64_at(40),
            }
        }
    }

    /// A `cat` whose every echoed line makes it run syscalls we observe.
    pub struct Echo {
        child: Child,
        stdin: ChildStdin,
        stdout: BufReader<ChildStdout>,
    }

    impl Echo {
        pub fn spawn() -> Echo {
            let mut child = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn cat");
            let stdin = child.stdin.take().unwrap();
            let stdout = BufReader::new(child.stdout.take().unwrap());
            Echo {
                child,
                stdin,
                stdout,
            }
        }

        pub fn pid(&self) -> u32 {
            self.child.id()
        }

        /// One round trip: cat reads and writes, in its current cgroup.
        pub fn poke(&mut self) {
            self.stdin.write_all(b"x\n").unwrap();
            self.stdin.flush().unwrap();
            let mut line = String::new();
            self.stdout.read_line(&mut line).unwrap();
            assert_eq!(line, "x\n");
        }
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub fn open(obj: &mut MaybeUninit<OpenObject>) -> OpenBusProbeSkel<'_> {
        prism_testkit::fixtures::require_root();
        BusProbeSkelBuilder::default()
            .open(obj)
            .expect("open bus_probe")
    }

    pub fn load_and_attach(obj: &mut MaybeUninit<OpenObject>) -> BusProbeSkel<'_> {
        let mut skel = open(obj).load().expect("load bus_probe");
        skel.attach().expect("attach bus_probe");
        skel
    }

    pub fn watch(skel: &BusProbeSkel, pid: u32) {
        skel.maps
            .watched
            .update(&pid.to_ne_bytes(), &[0u8; 48], MapFlags::ANY)
            .expect("watch pid");
    }

    pub fn observed(skel: &BusProbeSkel, pid: u32) -> Observation {
        let bytes = skel
            .maps
            .watched
            .lookup(&pid.to_ne_bytes(), MapFlags::ANY)
            .unwrap()
            .expect("pid watched");
        Observation::from_bytes(&bytes)
    }

    pub fn attach_bus(skel: &BusProbeSkel, keeper: &mut SlotKeeper) -> SlotChange {
        keeper
            .poll(&skel.maps.prism_bus_identity, &skel.maps.prism_bus_meta)
            .expect("poll the bus")
    }
}
