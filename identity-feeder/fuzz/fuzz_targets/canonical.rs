//! The canonicaliser on arbitrary namespaces, service accounts and labels:
//! it never panics, and whatever it accepts is unambiguous (no part holds a
//! separator) and bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_feeder::workload::canonical::Canonical;
use prism_feeder::workload::labels::{Labels, MAX_LABELS};

fuzz_target!(|input: (String, String, Vec<(String, String)>, String)| {
    let (namespace, service_account, pairs, selector) = input;
    let labels: Labels = pairs.into_iter().collect();
    if let Ok(c) = Canonical::for_pod(&namespace, &service_account, &labels) {
        let s = c.as_str();
        assert!(s.starts_with("io.prism/namespace="));
        // Every part is `key=value;`: one `=` and one `;` per part.
        let parts: Vec<&str> = s.split_terminator(';').collect();
        assert!(parts.len() <= 2 + MAX_LABELS);
        for p in &parts {
            assert_eq!(p.matches('=').count(), 1, "{s:?}");
        }
        assert!(!s.chars().any(char::is_control));
        assert_eq!(c.label_hash(), prism_bus_hash(s));
    }
    if let Ok(c) = Canonical::for_cgroup(&selector, &labels) {
        let s = c.as_str();
        assert!(s.starts_with("io.prism/cgroup="));
        assert!(!s.chars().any(char::is_control));
    }
});

fn prism_bus_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
