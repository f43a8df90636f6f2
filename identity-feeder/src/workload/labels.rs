//! What a valid Kubernetes name or label is, and the bounds the feeder puts
//! on a workload's labels. Everything a workload's identity is made from
//! passes through here first, so a canonical string can never hold a `;`,
//! an `=` in the wrong place, a control character or an unbounded length.

use std::collections::BTreeMap;

use crate::failure::Failure;

/// Most labels a workload may carry; a pod with more is refused (Kubernetes
/// itself bounds only the total size, at 256 KiB with the annotations).
pub const MAX_LABELS: usize = 64;

const MAX_NAME: usize = 63;
const MAX_SUBDOMAIN: usize = 253;

/// Labels as the canonical string uses them: valid, sorted by key, bounded.
pub type Labels = BTreeMap<String, String>;

/// Check every label, and the count.
pub fn validate(labels: &Labels) -> Result<(), Failure> {
    if labels.len() > MAX_LABELS {
        return Err(Failure::TooManyLabels);
    }
    for (k, v) in labels {
        if !is_label_key(k) {
            return Err(Failure::BadLabelKey);
        }
        if !is_label_value(v) {
            return Err(Failure::BadLabelValue);
        }
    }
    Ok(())
}

/// `[prefix/]name`: prefix a DNS subdomain, name 1..=63 of `[A-Za-z0-9._-]`
/// starting and ending alphanumeric.
pub fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_qualified_name(name),
        None => is_qualified_name(key),
    }
}

/// Empty, or what a qualified name may be.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_qualified_name(value)
}

/// A namespace name: a DNS-1123 label.
pub fn is_namespace(s: &str) -> bool {
    is_dns_label(s)
}

/// A service account name: a DNS-1123 subdomain.
pub fn is_service_account(s: &str) -> bool {
    is_dns_subdomain(s)
}

/// Labels from pairs (tests).
#[cfg(test)]
pub fn from_pairs(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn is_qualified_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Kubernetes' `IsDNS1123Label` (k8s.io/apimachinery, util/validation):
/// 1..=63 of `[a-z0-9-]`, alphanumeric at both ends.
fn is_dns_label(s: &str) -> bool {
    s.len() <= MAX_NAME && is_dns_label_format(s)
}

/// Kubernetes' `IsDNS1123Subdomain`: at most 253 characters of dot-separated
/// parts in the label format; the parts themselves are not held to 63 (a
/// 100-character service account is valid).
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_SUBDOMAIN && s.split('.').all(is_dns_label_format)
}

fn is_dns_label_format(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in [
            "app",
            "app.kubernetes.io/name",
            "a",
            "A_b.c-9",
            "prism.io/latency-class",
            &format!("{}.example.com/name", "p".repeat(100)),
        ] {
            assert!(is_label_key(ok), "{ok}");
        }
        for bad in [
            "",
            "-app",
            "app-",
            "a/b/c",
            "/name",
            "Prefix.IO/name",
            "a;b",
            "a=b",
            "tab\tkey",
            "ключ",
            &"k".repeat(64),
            &format!("{}/n", "p".repeat(254)),
        ] {
            assert!(!is_label_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn names_as_kubernetes_validates_them() {
        // DNS-1123 subdomains (service accounts, label key prefixes): 253 in
        // all, parts of any length; labels (namespaces): 63.
        for ok in [
            "default",
            "a.b-c",
            &"s".repeat(253),
            &format!("{}.x", "s".repeat(100)),
        ] {
            assert!(is_service_account(ok), "{ok}");
        }
        for bad in ["", &"s".repeat(254), "a..b", "-a", "a-", "A", "a_b", ".a"] {
            assert!(!is_service_account(bad), "{bad:?}");
        }
        assert!(is_namespace(&"n".repeat(63)));
        assert!(!is_namespace(&"n".repeat(64)));
        assert!(!is_namespace("a.b"));
    }

    #[test]
    fn values() {
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_3-x"));
        assert!(!is_label_value("a;b"));
        assert!(!is_label_value("line\nbreak"));
        assert!(!is_label_value("\u{0}"));
        assert!(!is_label_value(&"v".repeat(64)));
        assert!(is_label_value(&"v".repeat(63)));
    }

    #[test]
    fn names() {
        assert!(is_namespace("team-a"));
        assert!(!is_namespace("Team-A"));
        assert!(!is_namespace("a.b"));
        assert!(is_service_account("api.sa-1"));
        assert!(!is_service_account("api..sa"));
    }

    #[test]
    fn counts_and_reports_the_first_bad_label() {
        let mut l = Labels::new();
        l.insert("app".into(), "api".into());
        assert_eq!(validate(&l), Ok(()));
        l.insert("bad key".into(), "x".into());
        assert_eq!(validate(&l), Err(Failure::BadLabelKey));
        let many: Labels = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert_eq!(validate(&many), Err(Failure::TooManyLabels));
    }
}
