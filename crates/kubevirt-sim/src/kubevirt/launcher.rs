//! The virt-launcher pod of a VMI, rendered as KubeVirt's virt-controller does
//! (`services/template.go`, `renderresources.go`): its labels, annotations and owner
//! reference, and requests with the memory overhead, so the real scheduler packs nodes as
//! on a real cluster. The VMI's nodeSelector, affinity and tolerations are copied.

use serde_json::{Map, Value, json};

use super::config::ClusterConfig;
use crate::quantity;

/// The launcher container image the simulator reports.
pub const LAUNCHER_IMAGE: &str = "quay.io/kubevirt/virt-launcher:v1.6.0";
/// The readiness gate of launcher pods, True while the VMI is not paused.
pub const UNPAUSED_GATE: &str = "kubevirt.io/virtual-machine-unpaused";

const MI: u64 = 1024 * 1024;

fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str)
}

/// Guest memory: `memory.guest`, else the memory request, else the limit.
pub fn guest_memory(vmi: &Value) -> Option<u64> {
    str_at(vmi, "/spec/domain/memory/guest")
        .or_else(|| str_at(vmi, "/spec/domain/resources/requests/memory"))
        .or_else(|| str_at(vmi, "/spec/domain/resources/limits/memory"))
        .and_then(quantity::bytes)
}

/// vCPUs: the CPU topology when set, else the CPU limit, else the request, else 1.
pub fn vcpus(vmi: &Value) -> u64 {
    let topo = ["sockets", "cores", "threads"].map(|k| {
        vmi.pointer(&format!("/spec/domain/cpu/{k}"))
            .and_then(Value::as_u64)
    });
    if topo.iter().any(Option::is_some) {
        return topo.iter().map(|v| v.unwrap_or(1).max(1)).product();
    }
    str_at(vmi, "/spec/domain/resources/limits/cpu")
        .or_else(|| str_at(vmi, "/spec/domain/resources/requests/cpu"))
        .and_then(quantity::millicores)
        .map(|m| m.div_ceil(1000).max(1))
        .unwrap_or(1)
}

/// KubeVirt's memory overhead estimate for the launcher pod (reference §8).
pub fn memory_overhead(vmi: &Value, guest: u64) -> u64 {
    let devices = vmi
        .pointer("/spec/domain/devices")
        .cloned()
        .unwrap_or(Value::Null);
    let mut overhead = guest / 512; // page tables
    overhead += 240 * MI; // virt-launcher-monitor, virt-launcher, virtlogd, virtqemud, qemu
    overhead += 8 * MI * vcpus(vmi);
    overhead += 8 * MI; // IOThread
    if devices.get("autoattachGraphicsDevice").and_then(Value::as_bool) != Some(false) {
        overhead += 32 * MI;
    }
    let has = |k: &str| {
        devices
            .get(k)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    if has("hostDevices") || has("gpus") {
        overhead += 1024 * MI; // VFIO
    }
    if devices.get("tpm").is_some() {
        overhead += 53 * MI;
    }
    if vmi
        .pointer("/spec/domain/cpu/dedicatedCpuPlacement")
        .and_then(Value::as_bool)
        == Some(true)
    {
        overhead += 100 * MI;
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        if vmi.pointer(&format!("/spec/{probe}/exec")).is_some() {
            overhead += 110 * MI;
        }
    }
    overhead
}

/// The launcher pod's hostname label value: `spec.hostname`, else the VMI name cut at the
/// first dot and at 63 characters.
pub fn hostname(vmi: &Value) -> String {
    if let Some(h) = str_at(vmi, "/spec/hostname") {
        return h.to_string();
    }
    let name = str_at(vmi, "/metadata/name").unwrap_or_default();
    let short = name.split('.').next().unwrap_or(name);
    short.chars().take(63).collect()
}

/// The pod's resources: CPU request = (vCPUs + IOThreads) / cpuAllocationRatio unless the
/// VMI sets one; memory request = guest request + overhead.
pub fn resources(vmi: &Value, cfg: &ClusterConfig) -> Value {
    let mut requests = Map::new();
    let mut limits = Map::new();
    let cpu = match str_at(vmi, "/spec/domain/resources/requests/cpu").and_then(quantity::millicores) {
        Some(m) => m,
        None => ((vcpus(vmi) + 1) * 1000).div_ceil(cfg.cpu_allocation_ratio.max(1)),
    };
    requests.insert("cpu".into(), json!(quantity::format_millicores(cpu.max(1))));
    let guest = guest_memory(vmi).unwrap_or(0);
    let guest_request = str_at(vmi, "/spec/domain/resources/requests/memory")
        .and_then(quantity::bytes)
        .unwrap_or(guest * 100 / cfg.memory_overcommit.max(1));
    let overcommit_overhead = vmi
        .pointer("/spec/domain/resources/overcommitGuestOverhead")
        .and_then(Value::as_bool)
        == Some(true);
    let overhead = if overcommit_overhead {
        0
    } else {
        memory_overhead(vmi, guest)
    };
    let mem = (guest_request + overhead).div_ceil(MI) * MI;
    requests.insert("memory".into(), json!(quantity::format_bytes(mem)));
    if let Some(l) = str_at(vmi, "/spec/domain/resources/limits/cpu") {
        limits.insert("cpu".into(), json!(l));
    }
    if let Some(l) = str_at(vmi, "/spec/domain/resources/limits/memory").and_then(quantity::bytes) {
        limits.insert(
            "memory".into(),
            json!(quantity::format_bytes((l + overhead).div_ceil(MI) * MI)),
        );
    }
    let mut r = json!({"requests": requests});
    if !limits.is_empty() {
        r["limits"] = Value::Object(limits);
    }
    r
}

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
    let mut node_selector: Map<String, Value> = vmi
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    node_selector.insert("kubevirt.io/schedulable".into(), json!("true"));
    let grace = vmi
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(30)
        + 30;
    let mut affinity = vmi.pointer("/spec/affinity").cloned().unwrap_or(Value::Null);
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
    if !affinity.is_null() {
        spec["affinity"] = affinity;
    }
    for (from, to) in [
        ("tolerations", "tolerations"),
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
mod tests {
    use super::*;

    fn vmi() -> Value {
        json!({
            "metadata": {"name": "db.example", "namespace": "prod", "uid": "u-1", "labels": {"app": "db"},
                          "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"}},
            "spec": {
                "domain": {"cpu": {"cores": 2}, "resources": {"requests": {"memory": "2Gi"}}, "devices": {}},
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "k", "operator": "Exists"}],
            }
        })
    }

    #[test]
    fn pod_carries_kubevirt_metadata_and_placement() {
        let pod = render(&vmi(), &ClusterConfig::default(), None);
        assert_eq!(pod["metadata"]["generateName"], "virt-launcher-db.example-");
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["kubevirt.io"], "virt-launcher");
        assert_eq!(labels["kubevirt.io/created-by"], "u-1");
        assert_eq!(labels["vm.kubevirt.io/name"], "db");
        assert_eq!(labels["app"], "db");
        let ann = &pod["metadata"]["annotations"];
        assert_eq!(ann["kubevirt.io/domain"], "db.example");
        assert_eq!(ann["team"], "a");
        assert!(
            ann.get("kubectl.kubernetes.io/last-applied-configuration")
                .is_none()
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(pod["spec"]["nodeSelector"]["kubevirt.io/schedulable"], "true");
        assert_eq!(pod["spec"]["nodeSelector"]["disk"], "ssd");
        assert_eq!(pod["spec"]["tolerations"][0]["key"], "k");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 60);
    }

    #[test]
    fn pvc_and_data_volume_disks_are_mounted_as_claims() {
        let mut v = vmi();
        v["spec"]["volumes"] = json!([
            {"name": "root", "containerDisk": {"image": "fedora"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "db-data"}},
            {"name": "boot", "dataVolume": {"name": "db-boot"}},
        ]);
        let pod = render(&v, &ClusterConfig::default(), None);
        let claims: Vec<(&str, &str)> = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| {
                Some((
                    v["name"].as_str()?,
                    v.pointer("/persistentVolumeClaim/claimName")?.as_str()?,
                ))
            })
            .collect();
        assert_eq!(claims, vec![("data", "db-data"), ("boot", "db-boot")]);
    }

    #[test]
    fn requests_include_overhead() {
        let pod = render(&vmi(), &ClusterConfig::default(), None);
        let req = &pod["spec"]["containers"][0]["resources"]["requests"];
        // (2 vCPUs + 1 IOThread) / 10 = 300m.
        assert_eq!(req["cpu"], "300m");
        // 2Gi + 4Mi page tables + 240Mi + 16Mi vCPUs + 8Mi IOThread + 32Mi video.
        assert_eq!(req["memory"], "2348Mi");
    }

    #[test]
    fn migration_target_avoids_the_source_node() {
        let pod = render(&vmi(), &ClusterConfig::default(), Some(("mig", "m-1", "node-1")));
        assert_eq!(pod["metadata"]["labels"]["kubevirt.io/migrationJobUID"], "m-1");
        let term =
            &pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(
            term["labelSelector"]["matchLabels"]["kubevirt.io/created-by"],
            "u-1"
        );
        assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    }
}
