//! The manifests in deploy/ say what the README says: parsed into the
//! Kubernetes API's own types, they grant least privilege, read only pods,
//! and run the feeder with flags it knows and the probes it serves.

use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::core::v1::{Container, PodSpec, VolumeMount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn deploy_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read<T: DeserializeOwned>(file: &str, kind: &str) -> T {
    let path = deploy_dir().join(file);
    let text = std::fs::read_to_string(&path).expect("manifest");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("YAML");
    let doc = docs
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {file}"));
    serde_json::from_value(doc).unwrap_or_else(|e| panic!("{file}: {kind}: {e}"))
}

#[test]
fn the_daemonset_runs_with_cap_bpf_only_and_read_only_cgroups() {
    let ds: DaemonSet = read("daemonset.yaml", "DaemonSet");
    let pod = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("prism-feeder"));
    assert_ne!(pod.host_network, Some(true));
    assert_ne!(pod.host_pid, Some(true));
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(caps.add.as_deref(), Some(&["BPF".to_string()][..]));
    let mounts = c.volume_mounts.as_ref().unwrap();
    let cgroup = mounts.iter().find(|m| m.name == "cgroup").unwrap();
    assert_eq!(cgroup.read_only, Some(true));
    // Of the node's bpffs, the bus's pin directory alone, at the path the
    // feeder is told to pin in.
    let bpf_mounts: Vec<_> = mounts
        .iter()
        .filter(|m| m.mount_path.starts_with("/sys/fs/bpf"))
        .collect();
    assert_eq!(bpf_mounts.len(), 1, "{bpf_mounts:?}");
    assert_eq!(bpf_mounts[0].mount_path, "/sys/fs/bpf/prism");
    assert!(
        c.args
            .as_ref()
            .unwrap()
            .contains(&"--bus-dir=/sys/fs/bpf/prism".to_string())
    );
    let volumes = pod.volumes.as_ref().unwrap();
    let bus = volumes
        .iter()
        .find(|v| v.name == bpf_mounts[0].name)
        .unwrap();
    assert_eq!(
        bus.host_path.as_ref().unwrap().path,
        "/sys/fs/bpf/prism",
        "the host's whole bpffs must not be mounted"
    );
    let env = c.env.as_ref().unwrap();
    let node = env.iter().find(|e| e.name == "NODE_NAME").unwrap();
    assert_eq!(
        node.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "spec.nodeName"
    );
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .clone()
            .unwrap()
    };
    assert_eq!(probe_path(&c.liveness_probe), "/healthz");
    assert_eq!(probe_path(&c.readiness_probe), "/readyz");
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert!(limits.contains_key("memory"));

    // Every flag is one the feeder knows: clap refuses an unknown one
    // before it reaches --help.
    let out = Command::new(env!("CARGO_BIN_EXE_prism-feeder"))
        .args(c.args.as_ref().unwrap())
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rbac_reads_pods_and_nothing_else() {
    let role: ClusterRole = read("rbac.yaml", "ClusterRole");
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 1);
    let r = &rules[0];
    assert_eq!(r.api_groups.as_deref(), Some(&["".to_string()][..]));
    assert_eq!(r.resources.as_deref(), Some(&["pods".to_string()][..]));
    let mut verbs = r.verbs.clone();
    verbs.sort();
    assert_eq!(verbs, ["get", "list", "watch"]);
    let binding: ClusterRoleBinding = read("rbac.yaml", "ClusterRoleBinding");
    let s = &binding.subjects.unwrap()[0];
    assert_eq!(
        (s.name.as_str(), s.namespace.as_deref()),
        ("prism-feeder", Some("prism-system"))
    );
}

#[test]
fn the_namespace_is_the_only_privileged_one() {
    let ns: Namespace = read("namespace.yaml", "Namespace");
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("privileged")
    );
    let ds: DaemonSet = read("daemonset.yaml", "DaemonSet");
    assert_eq!(ds.metadata.namespace, ns.metadata.name);
}

/// `doc` through the API type of its kind and back: whatever the type does
/// not know (a misspelt or misplaced field, a wrong type) is an error or is
/// dropped, so the round trip differs. A schema check that needs no server.
fn schema_check<T: DeserializeOwned + Serialize>(file: &str, doc: &serde_json::Value) {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{file}: {}: {e}", doc["kind"]));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, doc,
        "{file}: {} has fields its API type does not know",
        doc["kind"]
    );
}

#[test]
fn every_manifest_matches_the_api_schema_and_the_kustomization_lists_them_all() {
    let kustomization: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut files: Vec<String> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    files.sort();
    assert_eq!(
        listed, files,
        "kustomization.yaml resources vs deploy/*.yaml"
    );
    let mut kinds = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("YAML");
        for doc in &docs {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            match kind.as_str() {
                "Namespace" => schema_check::<Namespace>(file, doc),
                "ServiceAccount" => schema_check::<ServiceAccount>(file, doc),
                "ClusterRole" => schema_check::<ClusterRole>(file, doc),
                "ClusterRoleBinding" => schema_check::<ClusterRoleBinding>(file, doc),
                "DaemonSet" => schema_check::<DaemonSet>(file, doc),
                other => panic!("{file}: no schema check for kind {other:?}"),
            }
            kinds.push(kind);
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "DaemonSet",
            "DaemonSet",
            "DaemonSet",
            "Namespace",
            "ServiceAccount"
        ]
    );
}

#[test]
fn the_schema_check_catches_a_misspelt_field() {
    let text = std::fs::read_to_string(deploy_dir().join("daemonset.yaml")).unwrap();
    let mut doc: serde_json::Value = serde_saphyr::from_multiple::<serde_json::Value>(&text)
        .unwrap()
        .remove(0);
    doc["spec"]["template"]["spec"]["serviceAcountName"] = "typo".into();
    let caught = std::panic::catch_unwind(|| schema_check::<DaemonSet>("daemonset.yaml", &doc));
    assert!(caught.is_err());
}

/// The pod spec and its one container of a DaemonSet manifest.
fn daemonset(file: &str) -> (PodSpec, Container) {
    let ds: DaemonSet = read(file, "DaemonSet");
    assert_eq!(ds.metadata.namespace.as_deref(), Some("prism-system"));
    let pod = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.containers.len(), 1, "{file}");
    let c = pod.containers[0].clone();
    (pod, c)
}

fn added_caps(c: &Container) -> Vec<String> {
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(false), "{}", c.name);
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    caps.add.clone().unwrap_or_default()
}

fn mount<'a>(c: &'a Container, path: &str) -> &'a VolumeMount {
    c.volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.mount_path == path)
        .unwrap_or_else(|| panic!("{} does not mount {path}", c.name))
}

/// Every flag of `args` is one `binary` (built beside the feeder, by a
/// workspace build) knows: clap refuses an unknown one before --help.
fn flags_known(binary: &str, args: &[String]) {
    let feeder = Path::new(env!("CARGO_BIN_EXE_prism-feeder"));
    let bin = feeder.with_file_name(binary);
    if !bin.exists() {
        println!(
            "{binary} is not built beside the feeder (a workspace build makes it): its flags are not checked"
        );
        return;
    }
    let out = Command::new(&bin)
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{binary} refuses the manifest's flags: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_scheduler_runs_in_the_host_pid_namespace_with_bpf_and_perfmon_only() {
    let (pod, c) = daemonset("scheduler-daemonset.yaml");
    assert_eq!(
        pod.host_pid,
        Some(true),
        "BPF knows the policy loop by its host pid"
    );
    assert_ne!(pod.host_network, Some(true));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert!(
        pod.node_selector
            .unwrap()
            .contains_key("prism.io/scheduler")
    );
    assert_eq!(added_caps(&c), ["BPF", "PERFMON"]);
    assert_eq!(mount(&c, "/sys/fs/bpf/prism").read_only, Some(true));
    assert_eq!(mount(&c, "/sys/fs/cgroup").read_only, Some(true));
    assert_eq!(
        c.command.as_deref(),
        Some(&["/usr/local/bin/scx_prism".to_string()][..])
    );
    flags_known("scx_prism", c.args.as_ref().unwrap());
}

#[test]
fn prism_net_attaches_with_bpf_and_net_admin_only() {
    let (pod, c) = daemonset("net-daemonset.yaml");
    assert_ne!(pod.host_pid, Some(true));
    assert_ne!(
        pod.host_network,
        Some(true),
        "cgroup_skb at the root cgroup sees every pod"
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(added_caps(&c), ["BPF", "NET_ADMIN"]);
    for path in ["/sys/fs/bpf/prism", "/sys/fs/cgroup", "/run/prism"] {
        assert_eq!(mount(&c, path).read_only, Some(true), "{path}");
    }
    flags_known("prism-net", c.args.as_ref().unwrap());
}

#[test]
fn the_kubelet_source_overlay_grants_nodes_proxy_get_only() {
    let text =
        std::fs::read_to_string(deploy_dir().join("kubelet-source/rbac-kubelet.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("YAML");
    let role: ClusterRole = serde_json::from_value(
        docs.iter()
            .find(|d| d["kind"] == "ClusterRole")
            .unwrap()
            .clone(),
    )
    .unwrap();
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["nodes/proxy".to_string()][..])
    );
    assert_eq!(rules[0].verbs, ["get"]);
    for doc in &docs {
        match doc["kind"].as_str() {
            Some("ClusterRole") => schema_check::<ClusterRole>("rbac-kubelet.yaml", doc),
            Some("ClusterRoleBinding") => {
                schema_check::<ClusterRoleBinding>("rbac-kubelet.yaml", doc)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let k: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(deploy_dir().join("kubelet-source/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        k["resources"],
        serde_json::json!(["../", "rbac-kubelet.yaml"])
    );
    let patch = k["patches"][0]["patch"].as_str().unwrap();
    assert!(
        patch.contains("--source=kubelet") && patch.contains("status.hostIP"),
        "{patch}"
    );
}
