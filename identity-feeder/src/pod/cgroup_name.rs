//! How the kubelet names a pod's cgroup, read backwards: given a cgroup
//! path, which pod (if any) it is the cgroup of.
//!
//! systemd driver: `kubepods.slice/kubepods-pod<uid>.slice` (guaranteed) or
//! `kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice`
//! (burstable, besteffort), with the uid's `-` written `_`. cgroupfs driver:
//! `kubepods/pod<uid>` or `kubepods/<qos>/pod<uid>`. A kubelet with its own
//! `--cgroup-root` nests this under another slice (`--kubepods-cgroup`).
//! Reading the tree this way covers every QoS class and both drivers with no
//! guess about a pod's QoS, and only what exists on disk is ever resolved.

use std::fmt;
use std::sync::Arc;

use crate::failure::Failure;

/// A pod's uid, as its cgroup is named after it. For a static pod this is
/// the kubelet's config hash (the mirror pod's `kubernetes.io/config.mirror`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodUid(Arc<str>);

impl PodUid {
    /// 1..=64 lowercase hex digits and dashes: nothing that could step out
    /// of a cgroup name.
    pub fn parse(s: &str) -> Result<PodUid, Failure> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-');
        if ok {
            Ok(PodUid(s.into()))
        } else {
            Err(Failure::BadUid)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PodUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PodUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PodUid({})", self.0)
    }
}

/// Which cgroup driver layouts to recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// Both, whichever the node uses.
    Auto,
    Systemd,
    Cgroupfs,
}

const QOS_TIERS: [&str; 2] = ["burstable", "besteffort"];

/// Where the kubelet puts pod cgroups, relative to the cgroup2 root.
#[derive(Debug, Clone)]
pub struct KubepodsLayout {
    /// e.g. `kubepods.slice`, and its unit prefix `kubepods`.
    systemd: Option<(String, String)>,
    /// e.g. `kubepods`.
    cgroupfs: Option<String>,
}

impl KubepodsLayout {
    /// `base`: the kubepods cgroup when the kubelet has a custom cgroup root
    /// (a path ending in `.slice` is a systemd layout); `None` for the default.
    pub fn new(driver: Driver, base: Option<&str>) -> KubepodsLayout {
        let base = base.map(|b| b.trim_matches('/'));
        let systemd_base = match base {
            Some(b) if b.ends_with(".slice") => Some(b.to_string()),
            Some(_) => None,
            None => Some("kubepods.slice".to_string()),
        };
        let cgroupfs_base = match base {
            Some(b) if !b.ends_with(".slice") => Some(b.to_string()),
            Some(_) => None,
            None => Some("kubepods".to_string()),
        };
        let systemd = systemd_base
            .filter(|_| driver != Driver::Cgroupfs)
            .map(|b| {
                let unit = b.rsplit('/').next().unwrap_or(&b);
                let prefix = unit.trim_end_matches(".slice").to_string();
                (b, prefix)
            });
        let cgroupfs = cgroupfs_base.filter(|_| driver != Driver::Systemd);
        KubepodsLayout { systemd, cgroupfs }
    }

    /// The pod whose cgroup `path` is, if it is one.
    pub fn pod_of(&self, path: &str) -> Option<PodUid> {
        if let Some((base, prefix)) = &self.systemd
            && let Some(rest) = strip_dir(path, base)
        {
            return systemd_pod(rest, prefix);
        }
        if let Some(base) = &self.cgroupfs
            && let Some(rest) = strip_dir(path, base)
        {
            return cgroupfs_pod(rest);
        }
        None
    }
}

/// `path` below `dir`, without the separating `/`.
fn strip_dir<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    path.strip_prefix(dir)?.strip_prefix('/')
}

fn systemd_pod(rest: &str, prefix: &str) -> Option<PodUid> {
    let unit = match rest.split_once('/') {
        None => rest.strip_prefix(prefix)?,
        Some((tier, unit)) => {
            let qos = tier
                .strip_prefix(prefix)?
                .strip_prefix('-')?
                .strip_suffix(".slice")?;
            if !QOS_TIERS.contains(&qos) {
                return None;
            }
            unit.strip_prefix(prefix)?
                .strip_prefix('-')?
                .strip_prefix(qos)?
        }
    };
    let uid = unit.strip_prefix("-pod")?.strip_suffix(".slice")?;
    if uid.contains('-') || uid.contains('/') {
        return None; // systemd names write the uid's dashes as underscores
    }
    PodUid::parse(&uid.replace('_', "-")).ok()
}

fn cgroupfs_pod(rest: &str) -> Option<PodUid> {
    let name = match rest.split_once('/') {
        None => rest,
        Some((tier, name)) if QOS_TIERS.contains(&tier) => name,
        Some(_) => return None,
    };
    if name.contains('/') {
        return None;
    }
    PodUid::parse(name.strip_prefix("pod")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "8f6a1c2e-3b4d-4e5f-9a0b-1c2d3e4f5a6b";
    const UID_: &str = "8f6a1c2e_3b4d_4e5f_9a0b_1c2d3e4f5a6b";

    fn pod(layout: &KubepodsLayout, path: &str) -> Option<String> {
        layout.pod_of(path).map(|u| u.to_string())
    }

    #[test]
    fn systemd_driver_every_qos() {
        let l = KubepodsLayout::new(Driver::Auto, None);
        let want = Some(UID.to_string());
        assert_eq!(
            pod(&l, &format!("kubepods.slice/kubepods-pod{UID_}.slice")),
            want
        );
        for q in ["burstable", "besteffort"] {
            assert_eq!(
                pod(
                    &l,
                    &format!("kubepods.slice/kubepods-{q}.slice/kubepods-{q}-pod{UID_}.slice")
                ),
                want,
                "{q}"
            );
        }
    }

    #[test]
    fn cgroupfs_driver_every_qos() {
        let l = KubepodsLayout::new(Driver::Auto, None);
        let want = Some(UID.to_string());
        assert_eq!(pod(&l, &format!("kubepods/pod{UID}")), want);
        assert_eq!(pod(&l, &format!("kubepods/burstable/pod{UID}")), want);
        assert_eq!(pod(&l, &format!("kubepods/besteffort/pod{UID}")), want);
    }

    #[test]
    fn containers_tiers_and_strangers_are_not_pods() {
        let l = KubepodsLayout::new(Driver::Auto, None);
        for not_a_pod in [
            "kubepods.slice".to_string(),
            "kubepods.slice/kubepods-burstable.slice".to_string(),
            format!("kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-abc.scope"),
            format!("kubepods/burstable/pod{UID}/0123abcd"),
            format!("kubepods/guaranteed/pod{UID}"),
            format!("kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{UID_}.slice"),
            format!("kubepods.slice/kubepods-pod{UID}.slice"), // dashes, not underscores
            format!("system.slice/kubepods-pod{UID_}.slice"),
            "kubepods/pod..%2f..".to_string(),
            "kubepods/podXYZ".to_string(),
        ] {
            assert_eq!(pod(&l, &not_a_pod), None, "{not_a_pod}");
        }
    }

    #[test]
    fn one_driver_only_and_custom_roots() {
        let sd = KubepodsLayout::new(Driver::Systemd, None);
        assert_eq!(pod(&sd, &format!("kubepods/pod{UID}")), None);
        let custom =
            KubepodsLayout::new(Driver::Auto, Some("kubelet.slice/kubelet-kubepods.slice"));
        assert_eq!(
            pod(
                &custom,
                &format!(
                    "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice"
                )
            ),
            Some(UID.to_string())
        );
        let custom_fs = KubepodsLayout::new(Driver::Auto, Some("/kubelet/kubepods"));
        assert_eq!(
            pod(&custom_fs, &format!("kubelet/kubepods/pod{UID}")),
            Some(UID.to_string())
        );
        assert_eq!(pod(&custom_fs, &format!("kubepods/pod{UID}")), None);
    }

    #[test]
    fn static_pod_hash_uids() {
        let l = KubepodsLayout::new(Driver::Auto, None);
        let hash = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
        assert_eq!(
            pod(
                &l,
                &format!(
                    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{hash}.slice"
                )
            ),
            Some(hash.to_string())
        );
        assert!(PodUid::parse("../etc").is_err());
        assert!(PodUid::parse("ABC").is_err());
        assert!(PodUid::parse(&"a".repeat(65)).is_err());
    }
}
