//! What the bus's readers and prism-net take from outside, on arbitrary
//! bytes: a bus entry and the meta record as a reader finds them in the
//! pinned maps, and prism-net's deny set (TOML). Never a panic; an entry
//! that decodes encodes back to the same bytes; a deny set that parses
//! names only valid identities.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_bus::abi::{Entry, IDENTITY_MASK, Meta};

fuzz_target!(|input: (&[u8], &str)| {
    let (bytes, policy) = input;
    if let Ok(e) = Entry::from_bytes(bytes) {
        assert_eq!(&e.to_bytes()[..], bytes, "decodes to what encodes back");
        assert!(e.identity.get() <= IDENTITY_MASK);
    }
    let _ = Meta::from_bytes(bytes);
    if let Ok(p) = prism_net::policy::Policy::parse(policy) {
        assert!(p.deny.len() <= prism_net::policy::MAX_RULES);
        assert!(p.deny.iter().all(|(identity, _)| *identity <= IDENTITY_MASK));
    }
});
