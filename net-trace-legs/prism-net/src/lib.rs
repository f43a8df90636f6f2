//! prism-net: the network leg. cgroup_skb programs count packets and bytes
//! per identity and direction, and drop what a deny set names ([`bpf`]);
//! [`policy`] reads and checks that set; [`exporter`] serves the counters to
//! Prometheus with the workload names the feeder publishes.

pub mod bpf;
pub mod exporter;
pub mod policy;

/// Which way a packet went, as the BPF side numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    pub fn from_raw(raw: u32) -> Option<Direction> {
        match raw {
            0 => Some(Direction::Ingress),
            1 => Some(Direction::Egress),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}
