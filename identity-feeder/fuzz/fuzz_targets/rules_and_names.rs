//! The other files a node's operator or the feeder hands to readers: cgroup
//! rules (TOML) and the identity names file (JSON), on arbitrary bytes.
//! Never a panic; a name the writer makes is always one every reader takes;
//! rules that parse classify any cgroup path without panicking.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use prism_bus::names::{self, NamedIdentity};
use prism_feeder::sources::cgroup_rules::Rules;

fuzz_target!(|input: (&[u8], String, u32)| {
    let (bytes, text, identity) = input;
    if let Ok(file) = names::parse(bytes, Path::new("fuzz")) {
        assert!(file.identities.iter().all(NamedIdentity::is_valid));
    }
    let written = NamedIdentity::new(identity & prism_bus::abi::IDENTITY_MASK, &text);
    assert!(written.is_valid(), "{text:?} -> {:?}", written.name);
    if let Ok(rules) = Rules::parse(&String::from_utf8_lossy(bytes)) {
        let _ = rules.classify(&text);
        let _ = rules.classify("system.slice/nginx.service");
    }
});
