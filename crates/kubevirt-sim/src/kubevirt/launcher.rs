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

use serde_json::{Map, Value, json};

use super::confidential::{self, SEV_DEVICE};
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

/// Prefix of the CPU feature labels the node-labeller writes.
pub const CPU_FEATURE_PREFIX: &str = "cpu-feature.node.kubevirt.io/";
/// Prefix of the CPU model labels (usable models).
pub const CPU_MODEL_PREFIX: &str = "cpu-model.node.kubevirt.io/";
/// Prefix of the labels naming every model a host-model guest may migrate as.
pub const CPU_MODEL_MIGRATION_PREFIX: &str = "cpu-model-migration.node.kubevirt.io/";
/// Prefix of the label naming the node's host-model CPU.
pub const HOST_MODEL_CPU_PREFIX: &str = "host-model-cpu.node.kubevirt.io/";
/// Prefix of the labels listing the host-model's required features.
pub const HOST_MODEL_REQUIRED_FEATURES_PREFIX: &str = "host-model-required-features.node.kubevirt.io/";
/// Prefix of the CPU vendor label.
pub const CPU_VENDOR_PREFIX: &str = "cpu-vendor.node.kubevirt.io/";
/// Prefix of the machine type labels.
pub const MACHINE_TYPE_PREFIX: &str = "machine-type.node.kubevirt.io/";
/// Label of nodes whose host-model is obsolete (host-model VMIs avoid them).
pub const OBSOLETE_HOST_MODEL: &str = "node-labeller.kubevirt.io/obsolete-host-model";

/// Whether the VMI's CPU is host-model: no `cpu`, or model `""` or `host-model` (the default).
pub fn is_host_model(vmi: &Value) -> bool {
    match vmi.pointer("/spec/domain/cpu") {
        None | Some(Value::Null) => true,
        Some(cpu) => matches!(
            cpu.get("model").and_then(Value::as_str),
            None | Some("" | "host-model")
        ),
    }
}

/// Whether the VMI asks for dedicated CPUs (`IsCPUDedicated`).
pub fn dedicated_cpus(vmi: &Value) -> bool {
    vmi.pointer("/spec/domain/cpu/dedicatedCpuPlacement")
        .and_then(Value::as_bool)
        == Some(true)
}

/// The VMI's CPU features as (name, policy); the policy defaults to `""` (= require).
fn cpu_features(vmi: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vmi
        .pointer("/spec/domain/cpu/features")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some((
                f.get("name")?.as_str()?.to_string(),
                f.get("policy")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ))
        })
        .collect();
    // The webhook adds `vmx` (require) when EVMCS is enabled (defaults/hyperv.go).
    let evmcs = vmi.pointer("/spec/domain/features/hyperv/evmcs");
    if evmcs.is_some_and(|e| e.get("enabled").and_then(Value::as_bool) != Some(false))
        && !out.iter().any(|(n, _)| n == "vmx")
    {
        out.push(("vmx".into(), "require".into()));
    }
    out
}

/// The launcher pod's nodeSelector (reference §1a), in the order of
/// `nodeselectorrenderer.go`: `kubevirt.io/schedulable` and the architecture, then the
/// cluster-wide selectors and the VMI's own (which may override those two), then the labels
/// KubeVirt derives from the VMI (dedicated CPUs, a named CPU model, required CPU features,
/// the machine type, TSC frequency, realtime, SEV), each `"true"`, which replace a value the
/// VMI set under the same key (`enableSelectorLabel` writes over the merged map).
pub fn node_selector(vmi: &Value, cfg: &ClusterConfig) -> Map<String, Value> {
    let mut sel = Map::new();
    sel.insert("kubevirt.io/schedulable".into(), json!("true"));
    if let Some(arch) = str_at(vmi, "/spec/architecture").filter(|a| !a.is_empty()) {
        sel.insert("kubernetes.io/arch".into(), json!(arch.to_lowercase()));
    }
    for (k, v) in &cfg.node_selectors {
        sel.insert(k.clone(), json!(v));
    }
    if let Some(own) = vmi.pointer("/spec/nodeSelector").and_then(Value::as_object) {
        for (k, v) in own {
            sel.insert(k.clone(), v.clone());
        }
    }
    let mut derived: Vec<String> = Vec::new();
    if dedicated_cpus(vmi) {
        derived.push("kubevirt.io/cpumanager".into());
    }
    if let Some(model) = str_at(vmi, "/spec/domain/cpu/model")
        .filter(|m| !m.is_empty() && *m != "host-model" && *m != "host-passthrough")
    {
        derived.push(format!("{CPU_MODEL_PREFIX}{model}"));
    }
    if let Some(machine) = str_at(vmi, "/status/machine/type")
        .filter(|m| !m.is_empty())
        .or_else(|| str_at(vmi, "/spec/domain/machine/type").filter(|m| !m.is_empty()))
    {
        derived.push(format!("{MACHINE_TYPE_PREFIX}{machine}"));
    }
    for (name, policy) in cpu_features(vmi) {
        if policy.is_empty() || policy == "require" {
            derived.push(format!("{CPU_FEATURE_PREFIX}{name}"));
        }
    }
    if let Some(label) = super::tsc::selector_label(vmi) {
        derived.push(label);
    }
    if vmi
        .pointer("/spec/domain/cpu/realtime")
        .is_some_and(|r| !r.is_null())
    {
        derived.push("kubevirt.io/realtime".into());
    }
    derived.extend(confidential::selector_labels(vmi));
    for label in derived {
        sel.insert(label, json!("true"));
    }
    sel
}

/// ANDs `expr` into every required node-affinity term of `affinity` (or adds it as the only
/// term).
fn and_required_expression(affinity: &mut Value, expr: Value) {
    if !affinity.is_object() {
        *affinity = json!({});
    }
    if !affinity.get("nodeAffinity").is_some_and(Value::is_object) {
        affinity["nodeAffinity"] = json!({});
    }
    let na = &mut affinity["nodeAffinity"];
    if !na
        .get("requiredDuringSchedulingIgnoredDuringExecution")
        .is_some_and(Value::is_object)
    {
        na["requiredDuringSchedulingIgnoredDuringExecution"] = json!({});
    }
    let req = &mut na["requiredDuringSchedulingIgnoredDuringExecution"];
    match req.get_mut("nodeSelectorTerms").and_then(Value::as_array_mut) {
        Some(terms) if !terms.is_empty() => {
            for term in terms.iter_mut() {
                if !term.is_object() {
                    *term = json!({});
                }
                match term.get_mut("matchExpressions").and_then(Value::as_array_mut) {
                    Some(exprs) => exprs.push(expr.clone()),
                    None => term["matchExpressions"] = json!([expr.clone()]),
                }
            }
        }
        _ => req["nodeSelectorTerms"] = json!([{"matchExpressions": [expr]}]),
    }
}

/// The launcher pod's affinity (reference §1b): a copy of the VMI's, with
/// `obsolete-host-model DoesNotExist` for host-model VMIs and `cpu-feature.…/<f>
/// DoesNotExist` for each forbidden feature, ANDed into every required term.
pub fn affinity(vmi: &Value) -> Value {
    let mut affinity = vmi.pointer("/spec/affinity").cloned().unwrap_or(Value::Null);
    if is_host_model(vmi) {
        and_required_expression(
            &mut affinity,
            json!({"key": OBSOLETE_HOST_MODEL, "operator": "DoesNotExist"}),
        );
    }
    for (name, policy) in cpu_features(vmi) {
        if policy == "forbid" {
            and_required_expression(
                &mut affinity,
                json!({"key": format!("{CPU_FEATURE_PREFIX}{name}"), "operator": "DoesNotExist"}),
            );
        }
    }
    affinity
}

fn interfaces(vmi: &Value) -> Vec<&Value> {
    vmi.pointer("/spec/domain/devices/interfaces")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// Whether the pod gets the default pod interface: no interfaces and
/// `autoattachPodInterface` unset or true.
fn default_pod_interface(vmi: &Value) -> bool {
    interfaces(vmi).is_empty()
        && vmi
            .pointer("/spec/domain/devices/autoattachPodInterface")
            .and_then(Value::as_bool)
            != Some(false)
}

fn uses_binding(vmi: &Value, binding: &str) -> bool {
    interfaces(vmi).iter().any(|i| {
        i.get(binding).is_some() || i.pointer("/binding/name").and_then(Value::as_str) == Some(binding)
    })
}

fn array_len(vmi: &Value, p: &str) -> usize {
    vmi.pointer(p).and_then(Value::as_array).map_or(0, Vec::len)
}

/// Whether the VMI asks for a Guaranteed pod (`WantsToHaveQOSGuaranteed`, api
/// `core/v1/types.go`): a CPU request equal to the CPU limit, and a memory limit with no
/// memory request or an equal one. The CPU request read is the one the mutating webhook
/// leaves: the CPU limit when only a limit is set (`setDefaultResourceRequests`,
/// `pkg/defaults/defaults.go`).
pub fn wants_guaranteed(vmi: &Value) -> bool {
    let get = |p: &str, f: fn(&str) -> Option<u64>| str_at(vmi, p).and_then(f).filter(|v| *v > 0);
    let cpu_lim = get("/spec/domain/resources/limits/cpu", quantity::millicores);
    let cpu_req = get("/spec/domain/resources/requests/cpu", quantity::millicores).or(cpu_lim);
    let mem_req = get("/spec/domain/resources/requests/memory", quantity::bytes);
    let mem_lim = get("/spec/domain/resources/limits/memory", quantity::bytes);
    let memory = match (mem_req, mem_lim) {
        (None, Some(_)) => true,
        (Some(r), l) => Some(r) == l,
        (None, None) => false,
    };
    memory && cpu_req.is_some() && cpu_req == cpu_lim
}

/// KubeVirt's memory overhead O of the launcher pod (reference §2, `GetMemoryOverhead`).
pub fn memory_overhead(vmi: &Value) -> u64 {
    let devices = vmi
        .pointer("/spec/domain/devices")
        .cloned()
        .unwrap_or(Value::Null);
    // Page tables: from the spec's memory request only (0 for a guest-only VMI).
    let mut overhead = str_at(vmi, "/spec/domain/resources/requests/memory")
        .and_then(quantity::bytes)
        .map_or(0, |r| r.div_ceil(1000) * 1000 / 512);
    overhead += 240 * MI; // virt-launcher-monitor, virt-launcher, virtlogd, virtqemud, qemu
    overhead += 8 * MI * vcpus(vmi);
    overhead += 8 * MI; // IOThread, once
    if devices.get("autoattachGraphicsDevice").and_then(Value::as_bool) != Some(false) {
        overhead += 32 * MI;
    }
    if str_at(vmi, "/spec/architecture") == Some("arm64") {
        overhead += 128 * MI;
    }
    let sriov = interfaces(vmi).iter().any(|i| i.get("sriov").is_some());
    if array_len(vmi, "/spec/domain/devices/hostDevices") > 0
        || array_len(vmi, "/spec/domain/devices/gpus") > 0
        || sriov
    {
        overhead += 1024 * MI; // VFIO
    }
    let downward_metrics = vmi
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(|v| v.get("downwardMetrics").is_some()));
    if downward_metrics {
        overhead += MI;
    }
    let mut probes = 0;
    for probe in ["readinessProbe", "livenessProbe"] {
        if vmi.pointer(&format!("/spec/{probe}/exec")).is_some() {
            overhead += 10 * MI;
            probes += 1;
        }
    }
    if probes > 0 {
        overhead += 100 * MI;
    }
    if confidential::is_sev(vmi) {
        overhead += 256 * MI;
    }
    if devices.get("tpm").is_some_and(|t| !t.is_null()) {
        overhead += 53 * MI;
    }
    if dedicated_cpus(vmi) || wants_guaranteed(vmi) {
        overhead += 100 * MI;
    }
    if let Some(added) =
        str_at(vmi, "/spec/domain/memory/reservedOverhead/addedOverhead").and_then(quantity::bytes)
    {
        overhead += added;
    }
    if uses_binding(vmi, "passt") {
        overhead += 250 * MI;
    }
    overhead
}

fn supplemental_threads(vmi: &Value) -> u64 {
    vmi.pointer("/spec/domain/ioThreads/supplementalPoolThreadCount")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// `ephemeral-storage` KubeVirt adds to the compute container (50M).
const EPHEMERAL_STORAGE: u64 = 50_000_000;

/// The compute container's resources (reference §1d, §2).
///
/// - CPU, shared: `(vCPUs + supplemental IOThreads) / cpuAllocationRatio` (1 vCPU = 100m with
///   the default ratio 10) unless the VMI requests CPU itself; the VMI's CPU limit is copied.
/// - CPU, dedicated: request = limit = vCPUs (+ IOThreads, + 1 for `isolateEmulatorThread`)
///   whole CPUs, and the memory limit equals the memory request (a Guaranteed pod).
/// - Memory: `R + O`, R the memory request, else the limit, else the guest memory adjusted
///   by `memoryOvercommit`; O the overhead ([`memory_overhead`]). With hugepages,
///   `hugepages-<size>` = the guest memory and the memory request is `O` plus what the
///   request exceeds the guest by.
/// - Device plugins as limits only (the API server copies them to requests):
///   `devices.kubevirt.io/kvm`, `tun` and `vhost-net`, one per GPU and host device.
/// - `ephemeral-storage`: the VMI's request + 50M.
///
/// A Multus network's `k8s.v1.cni.cncf.io/resourceName` (NAD annotation) is added by
/// [`super::nad`], which needs the cluster's NADs.
pub fn resources(vmi: &Value, cfg: &ClusterConfig) -> Value {
    let mut requests = Map::new();
    let mut limits = Map::new();
    let vmi_req = |k: &str| str_at(vmi, &format!("/spec/domain/resources/requests/{k}"));
    let vmi_lim = |k: &str| str_at(vmi, &format!("/spec/domain/resources/limits/{k}"));
    // Other requests and limits the VMI sets explicitly are passed on.
    for (src, dst) in [("requests", &mut requests), ("limits", &mut limits)] {
        if let Some(m) = vmi
            .pointer(&format!("/spec/domain/resources/{src}"))
            .and_then(Value::as_object)
        {
            for (k, v) in m {
                if !matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                    dst.insert(k.clone(), v.clone());
                }
            }
        }
    }

    // CPU.
    let dedicated = dedicated_cpus(vmi);
    if dedicated {
        let mut cpus = vcpus(vmi) + supplemental_threads(vmi);
        if vmi
            .pointer("/spec/domain/cpu/isolateEmulatorThread")
            .and_then(Value::as_bool)
            == Some(true)
        {
            let parity = vmi
                .pointer("/metadata/annotations/alpha.kubevirt.io~1EmulatorThreadCompleteToEvenParity")
                .is_some();
            cpus += if parity && cpus.is_multiple_of(2) { 2 } else { 1 };
        }
        requests.insert("cpu".into(), json!(cpus.to_string()));
        limits.insert("cpu".into(), json!(cpus.to_string()));
    } else {
        // A CPU limit without a request: the webhook copied the limit into the request.
        let cpu = match vmi_req("cpu").or(vmi_lim("cpu")).and_then(quantity::millicores) {
            Some(m) => m,
            None => {
                ((vcpus(vmi) + supplemental_threads(vmi)) * 1000).div_ceil(cfg.cpu_allocation_ratio.max(1))
            }
        };
        requests.insert("cpu".into(), json!(quantity::format_millicores(cpu.max(1))));
        if let Some(l) = vmi_lim("cpu") {
            limits.insert("cpu".into(), json!(l));
        }
    }

    // Memory.
    let guest = guest_memory(vmi).unwrap_or(0);
    let req_mem = vmi_req("memory").and_then(quantity::bytes);
    let lim_mem = vmi_lim("memory").and_then(quantity::bytes);
    let r = req_mem
        .or(lim_mem)
        .unwrap_or(guest * 100 / cfg.memory_overcommit.max(1));
    let overhead = memory_overhead(vmi);
    let hugepages = str_at(vmi, "/spec/domain/memory/hugepages/pageSize").filter(|s| !s.is_empty());
    let mem_request = if let Some(size) = hugepages {
        let pages = if guest > 0 { r.min(guest) } else { r };
        let size = format!("hugepages-{size}");
        requests.insert(size.clone(), json!(quantity::format_bytes(pages)));
        limits.insert(size, json!(quantity::format_bytes(pages)));
        overhead + req_mem.unwrap_or(0).saturating_sub(guest)
    } else {
        let overcommit_overhead = vmi
            .pointer("/spec/domain/resources/overcommitGuestOverhead")
            .and_then(Value::as_bool)
            == Some(true);
        r + if overcommit_overhead { 0 } else { overhead }
    };
    requests.insert("memory".into(), json!(quantity::format_bytes(mem_request)));
    if dedicated {
        limits.insert("memory".into(), json!(quantity::format_bytes(mem_request)));
    } else if let Some(l) = lim_mem {
        let l = if hugepages.is_some() {
            overhead + l.saturating_sub(guest)
        } else {
            l + overhead
        };
        limits.insert("memory".into(), json!(quantity::format_bytes(l)));
    }

    // Device plugins: limits only.
    let mut add = |name: &str| {
        let n = limits
            .get(name)
            .and_then(Value::as_str)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        limits.insert(name.to_string(), json!((n + 1).to_string()));
    };
    if !cfg.use_emulation {
        add("devices.kubevirt.io/kvm");
    }
    let ifaces = interfaces(vmi);
    if !ifaces.is_empty() || default_pod_interface(vmi) {
        add("devices.kubevirt.io/tun");
    }
    let virtio = default_pod_interface(vmi)
        || ifaces
            .iter()
            .any(|i| matches!(i.get("model").and_then(Value::as_str), None | Some("" | "virtio")));
    if virtio && !cfg.use_emulation {
        add("devices.kubevirt.io/vhost-net");
    }
    if vmi
        .pointer("/spec/domain/devices/autoattachVSOCK")
        .and_then(Value::as_bool)
        == Some(true)
    {
        add("devices.kubevirt.io/vhost-vsock");
    }
    for list in ["gpus", "hostDevices"] {
        for d in vmi
            .pointer(&format!("/spec/domain/devices/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = d
                .get("deviceName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                add(name);
            }
        }
    }

    // SEV: one `devices.kubevirt.io/sev` as request and limit (`WithSEV`, renderresources.go).
    if confidential::is_sev(vmi) {
        for m in [&mut requests, &mut limits] {
            let n = m
                .get(SEV_DEVICE)
                .and_then(Value::as_str)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            m.insert(SEV_DEVICE.into(), json!((n + 1).to_string()));
        }
    }

    // Ephemeral storage.
    let user_eph = vmi_req("ephemeral-storage")
        .and_then(quantity::bytes)
        .unwrap_or(0);
    requests.insert(
        "ephemeral-storage".into(),
        json!(if user_eph == 0 {
            "50M".to_string()
        } else {
            (user_eph + EPHEMERAL_STORAGE).to_string()
        }),
    );
    if let Some(l) = vmi_lim("ephemeral-storage").and_then(quantity::bytes) {
        limits.insert(
            "ephemeral-storage".into(),
            json!((l + EPHEMERAL_STORAGE).to_string()),
        );
    }

    let mut res = json!({"requests": requests});
    if !limits.is_empty() {
        res["limits"] = Value::Object(limits);
    }
    res
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
        // Reference §2: 2 vCPUs / cpuAllocationRatio 10 = 200m (IOThreads add nothing unless
        // a supplemental pool is set).
        assert_eq!(req["cpu"], "200m");
        // 2Gi + 4Mi page tables + 240Mi + 16Mi vCPUs + 8Mi IOThread + 32Mi video.
        assert_eq!(req["memory"], "2348Mi");
        assert_eq!(req["ephemeral-storage"], "50M");
    }

    fn plain(cpu: Value, resources: Value) -> Value {
        json!({"metadata": {"name": "v", "uid": "u"}, "spec": {"architecture": "amd64",
            "domain": {"cpu": cpu, "resources": resources, "devices": {}}}})
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn memory_overhead_matches_the_reference_checks() {
        // hypervisorbackend_test: 1Gi request, 1 vCPU, defaults → 290Mi.
        let v = plain(json!({}), json!({"requests": {"memory": "1Gi"}}));
        assert_eq!(memory_overhead(&v), 290 * MIB);
        // 2 vCPUs with 4Gi → 304Mi + 1 byte.
        let v = plain(json!({"cores": 2}), json!({"requests": {"memory": "4Gi"}}));
        assert_eq!(memory_overhead(&v), 304 * MIB + 1);
        // Instancetype VM: 2 vCPUs, only a guest size → no page tables: 296Mi.
        let mut v = plain(json!({"sockets": 2}), json!({}));
        v["spec"]["domain"]["memory"] = json!({"guest": "4Gi"});
        assert_eq!(memory_overhead(&v), 296 * MIB);
        // ... + 250Mi with passt.
        v["spec"]["domain"]["devices"]["interfaces"] = json!([{"name": "default", "passt": {}}]);
        assert_eq!(memory_overhead(&v), 546 * MIB);
        // Exec probes: 10Mi each + 100Mi once.
        let mut v = plain(json!({}), json!({"requests": {"memory": "1Gi"}}));
        v["spec"]["readinessProbe"] = json!({"exec": {"command": ["true"]}});
        v["spec"]["livenessProbe"] = json!({"exec": {"command": ["true"]}});
        assert_eq!(memory_overhead(&v), 410 * MIB);
        // VFIO (+1Gi), TPM (+53Mi), no video (−32Mi).
        let mut v = plain(json!({}), json!({"requests": {"memory": "1Gi"}}));
        v["spec"]["domain"]["devices"] = json!({"gpus": [{"name": "g", "deviceName": "nvidia.com/A100"}], "tpm": {}, "autoattachGraphicsDevice": false});
        assert_eq!(memory_overhead(&v), (290 + 1024 + 53 - 32) * MIB);
        // arm64: +128Mi.
        let mut v = plain(json!({}), json!({"requests": {"memory": "1Gi"}}));
        v["spec"]["architecture"] = json!("arm64");
        assert_eq!(memory_overhead(&v), 418 * MIB);
    }

    #[test]
    fn plain_vm_requests() {
        // 2Gi, 1 vCPU: 2Gi + 292Mi = 2340Mi; 100m.
        let v = plain(json!({"cores": 1}), json!({"requests": {"memory": "2Gi"}}));
        let r = resources(&v, &ClusterConfig::default());
        assert_eq!(r["requests"]["memory"], "2340Mi");
        assert_eq!(r["requests"]["cpu"], "100m");
        assert_eq!(r["limits"]["devices.kubevirt.io/kvm"], "1");
        assert_eq!(r["limits"]["devices.kubevirt.io/tun"], "1");
        assert_eq!(r["limits"]["devices.kubevirt.io/vhost-net"], "1");
        assert!(r["requests"].get("devices.kubevirt.io/kvm").is_none());
        assert!(r["limits"].get("memory").is_none());
        // 4 vCPUs = 400m, 16 = 1.6.
        let v = plain(
            json!({"sockets": 2, "cores": 2}),
            json!({"requests": {"memory": "1Gi"}}),
        );
        assert_eq!(
            resources(&v, &ClusterConfig::default())["requests"]["cpu"],
            "400m"
        );
        let v = plain(
            json!({"sockets": 2, "cores": 4, "threads": 2}),
            json!({"requests": {"memory": "1Gi"}}),
        );
        assert_eq!(
            resources(&v, &ClusterConfig::default())["requests"]["cpu"],
            "1600m"
        );
        // Supplemental IOThreads count; an explicit request wins.
        let mut v = plain(json!({"cores": 2}), json!({"requests": {"memory": "1Gi"}}));
        v["spec"]["domain"]["ioThreads"] = json!({"supplementalPoolThreadCount": 2});
        assert_eq!(
            resources(&v, &ClusterConfig::default())["requests"]["cpu"],
            "400m"
        );
        let v = plain(
            json!({"cores": 2}),
            json!({"requests": {"memory": "1Gi", "cpu": "1500m"}}),
        );
        assert_eq!(
            resources(&v, &ClusterConfig::default())["requests"]["cpu"],
            "1500m"
        );
        // Another ratio: 1 vCPU / 3 rounds up to 334m.
        let cfg = ClusterConfig {
            cpu_allocation_ratio: 3,
            ..ClusterConfig::default()
        };
        let v = plain(json!({"cores": 1}), json!({"requests": {"memory": "1Gi"}}));
        assert_eq!(resources(&v, &cfg)["requests"]["cpu"], "334m");
        // memoryOvercommit 200: a guest-only VMI requests half its guest memory (+ overhead).
        let cfg = ClusterConfig {
            memory_overcommit: 200,
            ..ClusterConfig::default()
        };
        let mut v = plain(json!({"cores": 1}), json!({}));
        v["spec"]["domain"]["memory"] = json!({"guest": "2Gi"});
        assert_eq!(resources(&v, &cfg)["requests"]["memory"], "1312Mi");
    }

    #[test]
    fn dedicated_cpus_with_hugepages() {
        let mut v = plain(
            json!({"cores": 2, "dedicatedCpuPlacement": true}),
            json!({"requests": {"memory": "4Gi"}}),
        );
        v["spec"]["domain"]["memory"] = json!({"guest": "4Gi", "hugepages": {"pageSize": "1Gi"}});
        let r = resources(&v, &ClusterConfig::default());
        assert_eq!(r["requests"]["cpu"], "2");
        assert_eq!(r["limits"]["cpu"], "2");
        assert_eq!(r["requests"]["hugepages-1Gi"], "4096Mi");
        assert_eq!(r["limits"]["hugepages-1Gi"], "4096Mi");
        // Overhead only: 8Mi + 1 byte page tables + 240 + 16 + 8 + 32 + 100 (dedicated).
        let mem = (404 * MIB + 1).to_string();
        assert_eq!(r["requests"]["memory"], mem);
        assert_eq!(r["limits"]["memory"], mem);
        // isolateEmulatorThread: +1 CPU.
        v["spec"]["domain"]["cpu"]["isolateEmulatorThread"] = json!(true);
        let r = resources(&v, &ClusterConfig::default());
        assert_eq!(r["requests"]["cpu"], "3");
        assert_eq!(r["limits"]["cpu"], "3");
        // A memory request above the guest size adds the difference.
        let mut v = plain(json!({"cores": 1}), json!({"requests": {"memory": "3Gi"}}));
        v["spec"]["domain"]["memory"] = json!({"guest": "2Gi", "hugepages": {"pageSize": "2Mi"}});
        let r = resources(&v, &ClusterConfig::default());
        assert_eq!(r["requests"]["hugepages-2Mi"], "2048Mi");
        assert_eq!(
            quantity::bytes(r["requests"]["memory"].as_str().unwrap()),
            Some(memory_overhead(&v) + 1024 * MIB)
        );
    }

    #[test]
    fn device_plugin_limits() {
        let mut v = plain(json!({}), json!({"requests": {"memory": "1Gi"}}));
        v["spec"]["domain"]["devices"] = json!({
            "interfaces": [{"name": "default", "masquerade": {}, "model": "e1000"}],
            "gpus": [{"name": "a", "deviceName": "nvidia.com/A100"}, {"name": "b", "deviceName": "nvidia.com/A100"}],
            "hostDevices": [{"name": "h", "deviceName": "intel.com/qat"}],
        });
        let r = resources(&v, &ClusterConfig::default());
        assert_eq!(r["limits"]["devices.kubevirt.io/kvm"], "1");
        assert_eq!(r["limits"]["devices.kubevirt.io/tun"], "1");
        assert!(r["limits"].get("devices.kubevirt.io/vhost-net").is_none());
        assert_eq!(r["limits"]["nvidia.com/A100"], "2");
        assert_eq!(r["limits"]["intel.com/qat"], "1");
        // No pod interface at all.
        let mut v = plain(json!({}), json!({"requests": {"memory": "1Gi"}}));
        v["spec"]["domain"]["devices"] = json!({"autoattachPodInterface": false});
        let r = resources(&v, &ClusterConfig::default());
        assert!(r["limits"].get("devices.kubevirt.io/tun").is_none());
        assert!(r["limits"].get("devices.kubevirt.io/vhost-net").is_none());
        // useEmulation: no kvm.
        let cfg = ClusterConfig {
            use_emulation: true,
            ..ClusterConfig::default()
        };
        let r = resources(&plain(json!({}), json!({})), &cfg);
        assert!(r["limits"].get("devices.kubevirt.io/kvm").is_none());
        // ephemeral-storage: the VMI's request + 50M.
        let v = plain(json!({}), json!({"requests": {"ephemeral-storage": "1G"}}));
        let r = resources(&v, &ClusterConfig::default());
        assert_eq!(r["requests"]["ephemeral-storage"], "1050000000");
    }

    #[test]
    fn node_selector_rows() {
        let mut v = plain(
            json!({"model": "Haswell", "dedicatedCpuPlacement": true, "realtime": {},
                   "features": [{"name": "avx2"}, {"name": "sse4", "policy": "require"},
                                {"name": "pcid", "policy": "optional"}, {"name": "svm", "policy": "forbid"}]}),
            json!({}),
        );
        v["spec"]["domain"]["machine"] = json!({"type": "q35"});
        v["spec"]["architecture"] = json!("AMD64");
        v["spec"]["nodeSelector"] = json!({"zone": "mine", "kubevirt.io/schedulable": "maybe"});
        let cfg = ClusterConfig {
            node_selectors: [
                ("zone".to_string(), "cluster".to_string()),
                ("rack".into(), "r1".into()),
            ]
            .into(),
            ..ClusterConfig::default()
        };
        let sel = node_selector(&v, &cfg);
        let t = json!("true");
        assert_eq!(sel["kubernetes.io/arch"], "amd64");
        assert_eq!(sel["kubevirt.io/cpumanager"], t);
        assert_eq!(sel["cpu-model.node.kubevirt.io/Haswell"], t);
        assert_eq!(sel["cpu-feature.node.kubevirt.io/avx2"], t);
        assert_eq!(sel["cpu-feature.node.kubevirt.io/sse4"], t);
        assert!(sel.get("cpu-feature.node.kubevirt.io/pcid").is_none());
        assert!(sel.get("cpu-feature.node.kubevirt.io/svm").is_none());
        assert_eq!(sel["machine-type.node.kubevirt.io/q35"], t);
        assert_eq!(sel["kubevirt.io/realtime"], t);
        assert_eq!(sel["rack"], "r1");
        // The VMI's own selectors win.
        assert_eq!(sel["zone"], "mine");
        assert_eq!(sel["kubevirt.io/schedulable"], "maybe");
        // ... except over a key KubeVirt derives: its "true" replaces the VMI's value
        // (nodeselectorrenderer.go enables derived labels after merging the VMI's).
        v["spec"]["nodeSelector"] = json!({"zone": "mine", "kubevirt.io/schedulable": "maybe",
            "cpu-model.node.kubevirt.io/Haswell": "false", "cpu-feature.node.kubevirt.io/avx2": "no",
            "machine-type.node.kubevirt.io/q35": "false", "kubernetes.io/arch": "arm64"});
        let sel = node_selector(&v, &cfg);
        assert_eq!(sel["cpu-model.node.kubevirt.io/Haswell"], t);
        assert_eq!(sel["cpu-feature.node.kubevirt.io/avx2"], t);
        assert_eq!(sel["machine-type.node.kubevirt.io/q35"], t);
        assert_eq!(
            sel["kubernetes.io/arch"], "arm64",
            "the arch is not a derived label"
        );
        v["spec"]["nodeSelector"] = json!({"zone": "mine"});
        // status.machine.type (the expanded name) wins over the spec's.
        v["status"] = json!({"machine": {"type": "pc-q35-rhel9.6.0"}});
        let sel = node_selector(&v, &cfg);
        assert_eq!(sel["machine-type.node.kubevirt.io/pc-q35-rhel9.6.0"], t);
        assert!(sel.get("machine-type.node.kubevirt.io/q35").is_none());
        // host-model and host-passthrough name no model label.
        for model in ["host-model", "host-passthrough"] {
            let v = plain(json!({"model": model}), json!({}));
            let sel = node_selector(&v, &ClusterConfig::default());
            assert!(!sel.keys().any(|k| k.starts_with(CPU_MODEL_PREFIX)), "{model}");
            assert!(sel.get("kubevirt.io/cpumanager").is_none());
        }
        // Forbidden features: DoesNotExist; a named model is not host-model.
        let aff = affinity(&v);
        let exprs = &aff["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"];
        assert_eq!(
            exprs,
            &json!([{"key": "cpu-feature.node.kubevirt.io/svm", "operator": "DoesNotExist"}])
        );
    }

    #[test]
    fn host_model_avoids_obsolete_nodes_in_every_term() {
        let obsolete = json!({"key": OBSOLETE_HOST_MODEL, "operator": "DoesNotExist"});
        let v = plain(json!({"model": "host-model"}), json!({}));
        assert_eq!(
            affinity(&v),
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [obsolete.clone()]}]}}})
        );
        let mut v = json!({"spec": {"domain": {}}});
        assert!(is_host_model(&v));
        let disk = json!({"key": "disk", "operator": "In", "values": ["nvme"]});
        v["spec"]["affinity"] = json!({
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [disk.clone()]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
            ]}},
            "podAffinity": {"x": 1},
        });
        let aff = affinity(&v);
        let terms =
            &aff["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
        assert_eq!(terms[0]["matchExpressions"], json!([disk, obsolete.clone()]));
        assert_eq!(terms[1]["matchExpressions"], json!([obsolete]));
        assert_eq!(terms[1]["matchFields"][0]["key"], "metadata.name");
        assert_eq!(aff["podAffinity"], json!({"x": 1}));
    }

    #[test]
    fn scheduling_fields_are_copied() {
        let mut v = vmi();
        v["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1}]);
        v["spec"]["schedulerName"] = json!("other");
        v["spec"]["priorityClassName"] = json!("high");
        let pod = render(&v, &ClusterConfig::default(), None);
        assert_eq!(pod["spec"]["topologySpreadConstraints"][0]["maxSkew"], 1);
        assert_eq!(pod["spec"]["schedulerName"], "other");
        assert_eq!(pod["spec"]["priorityClassName"], "high");
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
