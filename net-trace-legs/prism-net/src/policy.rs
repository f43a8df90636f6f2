//! The deny set: which identities' traffic prism-net drops, per direction,
//! from a TOML file (`--policy`):
//!
//! ```toml
//! [[deny]]
//! identity = 300
//! direction = "egress"     # ingress | egress | both (default)
//!
//! [[deny]]
//! identity = 2             # world: a reserved identity (< 256) ...
//! reserved = true          # ... is denied only when said so
//! ```
//!
//! A file that does not parse, or breaks a rule, is refused with the reason;
//! at start that stops prism-net, on SIGHUP the set in force stays.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail};
use prism_bus::Identity;
use serde::Deserialize;

use crate::Direction;

/// Most rules (the BPF deny map's size, NET_MAX_DENY).
pub const MAX_RULES: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    deny: Vec<DenySpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DenySpec {
    identity: u32,
    #[serde(default)]
    direction: Directions,
    #[serde(default)]
    reserved: bool,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Directions {
    Ingress,
    Egress,
    #[default]
    Both,
}

/// What is dropped: (identity, direction) pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub deny: BTreeSet<(u32, Direction)>,
}

impl Policy {
    pub fn parse(text: &str) -> anyhow::Result<Policy> {
        let file: PolicyFile = toml::from_str(text)?;
        let mut deny = BTreeSet::new();
        for (i, rule) in file.deny.iter().enumerate() {
            let id =
                Identity::new(rule.identity).with_context(|| format!("deny rule {}", i + 1))?;
            if id.is_reserved() && !rule.reserved {
                bail!(
                    "deny rule {}: identity {id} is reserved (below 256): set reserved = true to deny it",
                    i + 1
                );
            }
            let dirs: &[Direction] = match rule.direction {
                Directions::Ingress => &[Direction::Ingress],
                Directions::Egress => &[Direction::Egress],
                Directions::Both => &Direction::BOTH,
            };
            deny.extend(dirs.iter().map(|d| (id.get(), *d)));
        }
        if deny.len() > MAX_RULES {
            bail!(
                "{} (identity, direction) pairs denied; at most {MAX_RULES}",
                deny.len()
            );
        }
        Ok(Policy { deny })
    }

    pub fn load(path: &Path) -> anyhow::Result<Policy> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the net policy {}", path.display()))?;
        Policy::parse(&text).with_context(|| format!("net policy {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_directions_and_reserved_identities() {
        let p = Policy::parse(
            "[[deny]]\nidentity = 300\ndirection = \"egress\"\n\
             [[deny]]\nidentity = 301\n\
             [[deny]]\nidentity = 2\nreserved = true\ndirection = \"ingress\"\n",
        )
        .unwrap();
        let want: BTreeSet<_> = [
            (300, Direction::Egress),
            (301, Direction::Ingress),
            (301, Direction::Egress),
            (2, Direction::Ingress),
        ]
        .into();
        assert_eq!(p.deny, want);
        assert!(Policy::parse("").unwrap().deny.is_empty());
    }

    #[test]
    fn bad_policies_say_why() {
        for (text, why) in [
            ("[[deny]]\nidentity = 1\n", "reserved"),
            ("[[deny]]\nidentity = 16777216\n", "24 bits"),
            (
                "[[deny]]\nidentity = 300\ndirection = \"up\"\n",
                "unknown variant",
            ),
            ("[[deny]]\nidentity = 300\nport = 80\n", "unknown field"),
            ("[[deny]]\n", "missing field"),
        ] {
            let e = format!("{:#}", Policy::parse(text).unwrap_err());
            assert!(e.contains(why), "{text}: {e}");
        }
        let many: String = (0..3000)
            .map(|i| format!("[[deny]]\nidentity = {}\n", 256 + i))
            .collect();
        assert!(format!("{:#}", Policy::parse(&many).unwrap_err()).contains("at most"));
    }
}
