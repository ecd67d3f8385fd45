//! The virt-launcher pod of a VMI, rendered as KubeVirt's virt-controller does
//! (`services/template.go`, `renderresources.go`): its labels, annotations and owner
//! reference, and requests with the memory overhead, so the real scheduler packs nodes as
//! on a real cluster, and the nodeSelector and affinity KubeVirt derives from the VMI
//! (CPU model and features, machine type, architecture, dedicated CPUs, SEV) on top of the
//! VMI's own.
//!
//! The `guest-console-log` sidecar is rendered by [`super::console_log`], as a second
//! ordinary container (Kubernetes 1.20 has no native sidecars; the scheduler sums its
//! requests the same way).
//!
//! This file assembles the pod ([`render`]) and its volumes; what the VMI asks of its guest
//! is read in `launcher/guest.rs`, where the pod may run is decided in
//! `launcher/placement.rs` and its resources in `launcher/resources.rs`.

use serde_json::{Map, Value, json};

pub mod guest;
pub mod names;
pub mod placement;
pub mod resources;

pub use guest::{dedicated_cpus, guest_memory, hostname, is_host_model, vcpus};
pub use names::{LAUNCHER_IMAGE, UNPAUSED_GATE};
pub use placement::{
    CPU_FEATURE_PREFIX, CPU_MODEL_MIGRATION_PREFIX, CPU_MODEL_PREFIX, CPU_VENDOR_PREFIX,
    HOST_MODEL_CPU_PREFIX, HOST_MODEL_REQUIRED_FEATURES_PREFIX, MACHINE_TYPE_PREFIX, OBSOLETE_HOST_MODEL,
    affinity, node_selector,
};
pub use resources::{memory_overhead, resources, wants_guaranteed};

use super::config::ClusterConfig;
use super::world::str_at;

/// The emptyDirs of a real launcher pod: `kubectl drain` needs `--delete-emptydir-data`.
fn launcher_volumes() -> Vec<Value> {
    [
        "private",
        "public",
        "sockets",
        "virt-bin-share-dir",
        "libvirt-runtime",
        "ephemeral-disks",
        "container-disks",
        "hotplug-disks",
    ]
    .iter()
    .map(|v| json!({"name": v, "emptyDir": {}}))
    .collect()
}

/// The VMI's disks backed by a PVC, as pod volumes named after the VMI volume:
/// `persistentVolumeClaim` volumes, and `dataVolume` ones (whose PVC has the DataVolume's
/// name). Mounting them is what makes the scheduler wait for the claim to be bound and the
/// kubelet for the volume to be attached.
fn claim_volumes(vmi: &Value) -> Vec<Value> {
    vmi.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let name = v.get("name")?.as_str()?;
            let (claim, read_only) = match (v.get("persistentVolumeClaim"), v.get("dataVolume")) {
                (Some(pvc), _) => (pvc.get("claimName")?.as_str()?, pvc.get("readOnly").cloned()),
                (None, Some(dv)) => (dv.get("name")?.as_str()?, None),
                (None, None) => return None,
            };
            let mut claim = json!({"claimName": claim});
            if let Some(ro) = read_only {
                claim["readOnly"] = ro;
            }
            Some(json!({"name": name, "persistentVolumeClaim": claim}))
        })
        .collect()
}

/// The launcher pod for `vmi`. `migration` is `(vmim name, vmim uid, source node)` for a
/// migration target pod, which must land on another node.
pub fn render(vmi: &Value, cfg: &ClusterConfig, migration: Option<(&str, &str, &str)>) -> Value {
    let name = str_at(vmi, "/metadata/name").unwrap_or_default();
    let namespace = str_at(vmi, "/metadata/namespace").unwrap_or("default");
    let uid = str_at(vmi, "/metadata/uid").unwrap_or_default();
    let mut labels: Map<String, Value> = vmi
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // Node placement labels of the VMI describe the VMI, not the pod.
    labels.remove("kubevirt.io/nodeName");
    labels.remove("kubevirt.io/migrationTargetNodeName");
    labels.insert("kubevirt.io".into(), json!("virt-launcher"));
    labels.insert("kubevirt.io/created-by".into(), json!(uid));
    labels.insert("vm.kubevirt.io/name".into(), json!(hostname(vmi)));
    labels.insert(
        "vmi.kubevirt.io/id".into(),
        json!(name.chars().take(63).collect::<String>()),
    );
    let mut annotations: Map<String, Value> = vmi
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|a| {
            a.iter()
                .filter(|(k, _)| {
                    !(k.starts_with("kubectl.kubernetes.io/")
                        || (k.starts_with("kubevirt.io/") && k.ends_with("-observed-api-version")))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    annotations.insert("kubevirt.io/domain".into(), json!(name));
    annotations.insert("kubectl.kubernetes.io/default-container".into(), json!("compute"));
    annotations.insert("kubevirt.io/migrationTransportUnix".into(), json!("true"));
    annotations.insert(
        "descheduler.alpha.kubernetes.io/request-evict-only".into(),
        json!(""),
    );
    let node_selector = node_selector(vmi, cfg);
    let grace = vmi
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(30)
        + 30;
    let mut affinity = affinity(vmi);
    if let Some((job_name, job_uid, _source)) = migration {
        labels.insert("kubevirt.io/migrationJobUID".into(), json!(job_uid));
        annotations.insert("kubevirt.io/migrationJobName".into(), json!(job_name));
        // Never on the source node: required anti-affinity to the VMI's other pods.
        let term = json!({
            "labelSelector": {"matchLabels": {"kubevirt.io/created-by": uid}},
            "topologyKey": "kubernetes.io/hostname",
        });
        if !affinity.is_object() {
            affinity = json!({});
        }
        let terms = affinity
            .pointer_mut("/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array_mut)
            .map(|t| {
                t.push(term.clone());
                true
            })
            .unwrap_or(false);
        if !terms {
            affinity["podAntiAffinity"] = json!({"requiredDuringSchedulingIgnoredDuringExecution": [term]});
        }
    }
    let mut volumes = launcher_volumes();
    for v in claim_volumes(vmi) {
        if !volumes.iter().any(|existing| existing["name"] == v["name"]) {
            volumes.push(v);
        }
    }
    let mut spec = json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": grace,
        "nodeSelector": node_selector,
        "readinessGates": [{"conditionType": UNPAUSED_GATE}],
        "automountServiceAccountToken": false,
        "volumes": volumes,
        "containers": [{
            "name": "compute",
            "image": LAUNCHER_IMAGE,
            "command": ["/usr/bin/virt-launcher-monitor"],
            "resources": resources(vmi, cfg),
        }],
    });
    if let (Some(console), Some(containers)) = (
        super::console_log::container(vmi, cfg),
        spec["containers"].as_array_mut(),
    ) {
        containers.push(console);
    }
    if !affinity.is_null() {
        spec["affinity"] = affinity;
    }
    for (from, to) in [
        ("tolerations", "tolerations"),
        ("topologySpreadConstraints", "topologySpreadConstraints"),
        ("schedulerName", "schedulerName"),
        ("priorityClassName", "priorityClassName"),
    ] {
        if let Some(v) = vmi.pointer(&format!("/spec/{from}")) {
            spec[to] = v.clone();
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("virt-launcher-{name}-"),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstance",
                "name": name,
                "uid": uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    })
}

#[cfg(test)]
mod tests;
