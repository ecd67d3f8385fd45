//! The compute container's resources: CPU and memory requests and limits with
//! KubeVirt's memory overhead, hugepages, device-plugin resources and ephemeral storage,
//! so the real scheduler packs nodes as on a real cluster (KubeVirt:
//! `pkg/virt-controller/services/renderresources.go`).

use serde_json::{Map, Value, json};

use super::guest::{MI, dedicated_cpus, guest_memory, vcpus};
use crate::kubevirt::confidential::{self, SEV_DEVICE};
use crate::kubevirt::config::ClusterConfig;
use crate::kubevirt::world::str_at;
use crate::quantity;

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
/// [`crate::kubevirt::nad`], which needs the cluster's NADs.
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
