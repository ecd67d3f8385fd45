//! What a VMI asks of its guest, as KubeVirt's renderer reads it: guest memory, vCPUs,
//! hostname, host-model or named CPU, dedicated CPUs (`pkg/virt-controller/services`,
//! `renderresources.go`, `pkg/util/hardware`). Shared by [`super::placement`] and
//! [`super::resources`].

use serde_json::Value;

use crate::kubevirt::world::str_at;
use crate::quantity;

pub(super) const MI: u64 = 1024 * 1024;

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
