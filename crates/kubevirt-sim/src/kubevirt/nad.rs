//! Device-plugin resources of Multus networks: virt-controller looks up the
//! NetworkAttachmentDefinition each `multus` network of the VMI names
//! (`pkg/network/multus/nad.go` `NetworkToResource`: `<ns>/<name>`, or a bare name in the
//! VMI's namespace) and, for a NAD with the annotation `k8s.v1.cni.cncf.io/resourceName`
//! (an SR-IOV pool, say), asks for one of that resource per network on the compute
//! container, as request and limit (`renderresources.go` `WithNetworkResources`). A NAD
//! that does not exist fails the rendering: no launcher pod is created until it does.

use std::collections::HashMap;

use serde_json::{Value, json};

/// The NAD annotation naming the device-plugin resource its networks need.
pub const RESOURCE_NAME_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";

/// The NADs of the cluster by `(namespace, name)`, with their resource name if annotated.
pub type Nads = HashMap<(String, String), Option<String>>;

/// The NAD's entry for [`Nads`].
pub fn entry(nad: &Value) -> ((String, String), Option<String>) {
    let s = |p: &str| {
        nad.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let resource = nad
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(RESOURCE_NAME_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .map(String::from);
    ((s("/metadata/namespace"), s("/metadata/name")), resource)
}

/// The resources the VMI's multus networks need, one entry per network; an error naming
/// the first NAD that does not exist.
pub fn network_resources(vmi: &Value, nads: &Nads) -> Result<Vec<String>, String> {
    let namespace = vmi
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let mut out = Vec::new();
    for net in vmi
        .pointer("/spec/networks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(full) = net.pointer("/multus/networkName").and_then(Value::as_str) else {
            continue;
        };
        let (ns, name) = full.split_once('/').unwrap_or((namespace, full));
        match nads.get(&(ns.to_string(), name.to_string())) {
            None => {
                return Err(format!(
                    "failed to locate network attachment definition {ns}/{name}"
                ));
            }
            Some(Some(resource)) => out.push(resource.clone()),
            Some(None) => {}
        }
    }
    Ok(out)
}

/// Adds one of each resource in `names` to the requests and limits of the pod's `compute`
/// container.
pub fn add_to_pod(pod: &mut Value, names: &[String]) {
    let Some(compute) = pod
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut)
        .and_then(|cs| cs.iter_mut().find(|c| c["name"] == "compute"))
    else {
        return;
    };
    for kind in ["requests", "limits"] {
        if !compute["resources"][kind].is_object() {
            compute["resources"][kind] = json!({});
        }
        let list = &mut compute["resources"][kind];
        for name in names {
            let n = list
                .get(name)
                .and_then(Value::as_str)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            list[name.as_str()] = json!((n + 1).to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubevirt::config::ClusterConfig;
    use crate::kubevirt::launcher;

    fn nads() -> Nads {
        [
            json!({"metadata": {"namespace": "prod", "name": "sriov-a", "annotations": {RESOURCE_NAME_ANNOTATION: "intel.com/sriov_a"}}}),
            json!({"metadata": {"namespace": "infra", "name": "sriov-b", "annotations": {RESOURCE_NAME_ANNOTATION: "intel.com/sriov_b"}}}),
            json!({"metadata": {"namespace": "prod", "name": "bridge"}}),
        ]
        .iter()
        .map(entry)
        .collect()
    }

    fn vmi(networks: Value) -> Value {
        json!({"metadata": {"name": "v", "namespace": "prod", "uid": "u"}, "spec": {
            "domain": {"resources": {"requests": {"memory": "1Gi"}}, "devices": {}},
            "networks": networks}})
    }

    #[test]
    fn one_resource_per_annotated_network() {
        let v = vmi(json!([
            {"name": "default", "pod": {}},
            {"name": "a1", "multus": {"networkName": "sriov-a"}},
            {"name": "a2", "multus": {"networkName": "prod/sriov-a"}},
            {"name": "b", "multus": {"networkName": "infra/sriov-b"}},
            {"name": "br", "multus": {"networkName": "bridge"}},
        ]));
        let names = network_resources(&v, &nads()).unwrap();
        assert_eq!(
            names,
            ["intel.com/sriov_a", "intel.com/sriov_a", "intel.com/sriov_b"]
        );
        let mut pod = launcher::render(&v, &ClusterConfig::default(), None);
        add_to_pod(&mut pod, &names);
        let r = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(r["requests"]["intel.com/sriov_a"], "2");
        assert_eq!(r["limits"]["intel.com/sriov_a"], "2");
        assert_eq!(r["limits"]["intel.com/sriov_b"], "1");
        // The console-log container gets none.
        assert!(
            pod["spec"]["containers"][1]["resources"]["limits"]
                .get("intel.com/sriov_a")
                .is_none()
        );
    }

    #[test]
    fn a_missing_nad_fails_the_rendering() {
        let v = vmi(json!([{"name": "x", "multus": {"networkName": "other/none"}}]));
        assert_eq!(
            network_resources(&v, &nads()),
            Err("failed to locate network attachment definition other/none".into())
        );
    }
}
