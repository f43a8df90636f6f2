//! The pod parsers on arbitrary bytes: a kubelet pod list, a single pod (as
//! a watch delivers it), and the pod interpreted into a workload. Never a
//! panic; a refused pod says why with one of the closed set of reasons.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_feeder::pod::{LenientPod, Mirrors, mirror_uid, pod_state, read_pod_list};
use prism_feeder::workload::declared::NamespacePolicy;

fuzz_target!(|data: &[u8]| {
    let policy = NamespacePolicy::new(&["prod-*".to_string()]).expect("a valid glob");
    let mut issues = vec![];
    let _ = read_pod_list(data, |pod| {
        if let Ok(p) = pod.pod() {
            let _ = pod_state(p, Mirrors::Ignore, &policy, &mut issues);
        }
    });
    if let Ok(pod) = serde_json::from_slice::<LenientPod>(data) {
        if let Ok(p) = pod.pod() {
            let _ = mirror_uid(p);
            let _ = pod_state(p, Mirrors::Believe, &policy, &mut issues);
        }
    }
});
