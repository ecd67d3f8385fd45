//! Guest size and the requests of the virt-launcher pod that runs a VMI, overhead included.
//!
//! The scheduler places the launcher pod, not the guest, so capacity checks must add what
//! KubeVirt adds: the rules of `renderresources.go` and `hypervisorbackend.go`, as the
//! reference `kubevirt-pod-constraints.md` §1d and §2 gives them (CPU over the allocation
//! ratio or whole dedicated CPUs, memory plus overhead or hugepages, and the device-plugin
//! resources every launcher takes).

mod console_log;
mod devices;
mod nad;
mod requests;
mod webhook;

pub use console_log::{console_log_enabled, console_log_requests};
pub use devices::{KVM_DEVICE, SEV_DEVICE, TDX_DEVICE, TUN_DEVICE, VHOST_NET_DEVICE, is_sev, is_tdx};
pub use nad::{
    NetworkResources, RESOURCE_NAME_ANNOTATION, network_resources, unknown_network_resources_note,
};
pub use requests::Requests;
pub use webhook::{cpu_request, memory_request, wants_guaranteed_qos};

use crate::effective::ClusterConfig;
use crate::kubevirt::{InstancetypeSpec, VirtualMachineInstanceSpec};
use crate::quantity::parse_quantity;

const MI: f64 = 1024.0 * 1024.0;

/// The guest as KubeVirt will size it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuestSize {
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Guest memory in bytes, when anything sets it.
    pub memory: Option<f64>,
}

fn request(spec: &VirtualMachineInstanceSpec, name: &str) -> Option<f64> {
    let res = spec.domain.resources.as_ref()?;
    res.requests.get(name).and_then(|q| parse_quantity(q).ok())
}

fn limit(spec: &VirtualMachineInstanceSpec, name: &str) -> Option<f64> {
    let res = spec.domain.resources.as_ref()?;
    res.limits.get(name).and_then(|q| parse_quantity(q).ok())
}

/// The guest's vCPUs and memory: from the instancetype when there is one, else from
/// `domain.cpu` topology or CPU limits/requests, and `memory.guest` or memory requests/limits.
#[must_use]
pub fn guest_size(spec: &VirtualMachineInstanceSpec, instancetype: Option<&InstancetypeSpec>) -> GuestSize {
    if let Some(it) = instancetype {
        return GuestSize {
            vcpus: it.cpu.guest.max(1),
            memory: it.memory.guest.as_ref().and_then(|q| parse_quantity(q).ok()),
        };
    }
    let vcpus = match &spec.domain.cpu {
        Some(cpu) if cpu.cores.is_some() || cpu.sockets.is_some() || cpu.threads.is_some() => {
            cpu.cores.unwrap_or(1).max(1) * cpu.sockets.unwrap_or(1).max(1) * cpu.threads.unwrap_or(1).max(1)
        }
        // SetDefaultGuestCPUTopology: sockets from the CPU limit, else the request, else 1.
        _ => limit(spec, "cpu")
            .or_else(|| request(spec, "cpu"))
            .map_or(1, |c| c.ceil().max(1.0) as u32),
    };
    let memory = spec
        .domain
        .memory
        .as_ref()
        .and_then(|m| m.guest.as_ref())
        .and_then(|q| parse_quantity(q).ok())
        .or_else(|| request(spec, "memory"))
        .or_else(|| limit(spec, "memory"));
    GuestSize { vcpus, memory }
}

/// Whether the guest gets dedicated physical CPUs (the VMI's, or the instancetype's setting).
#[must_use]
pub fn dedicated_cpus(spec: &VirtualMachineInstanceSpec, instancetype: Option<&InstancetypeSpec>) -> bool {
    spec.domain.cpu.as_ref().and_then(|c| c.dedicated_cpu_placement) == Some(true)
        || instancetype.and_then(|it| it.cpu.dedicated_cpu_placement) == Some(true)
}

/// The hugepage size backing the guest (`memory.hugepages.pageSize`), if any.
#[must_use]
pub fn hugepage_size(
    spec: &VirtualMachineInstanceSpec,
    instancetype: Option<&InstancetypeSpec>,
) -> Option<String> {
    let from = |v: &serde_json::Value| v.get("pageSize").and_then(|p| p.as_str()).map(String::from);
    spec.domain
        .memory
        .as_ref()
        .and_then(|m| m.hugepages.as_ref())
        .and_then(from)
        .or_else(|| {
            instancetype
                .and_then(|it| it.memory.hugepages.as_ref())
                .and_then(from)
        })
}

/// KubeVirt's memory overhead for the launcher pod (reference §2, `GetMemoryOverhead`), in
/// bytes. The page-table term reads the VMI's memory *request*, so it is 0 for a guest sized
/// only by `memory.guest` (an instancetype VM).
#[must_use]
pub fn memory_overhead(spec: &VirtualMachineInstanceSpec, guest: GuestSize) -> f64 {
    let devices = &spec.domain.devices;
    let page_tables = request(spec, "memory").map_or(0.0, |r| ((r / 1000.0).ceil() * 1000.0 / 512.0).floor());
    let mut overhead = page_tables
        + 240.0 * MI // virt-launcher-monitor, virt-launcher, virtlogd, virtqemud, qemu
        + 8.0 * MI * f64::from(guest.vcpus.max(1))
        + 8.0 * MI; // IOThread
    if devices.autoattach_graphics_device != Some(false) {
        overhead += 32.0 * MI;
    }
    if spec.architecture.as_deref() == Some("arm64") {
        overhead += 128.0 * MI;
    }
    let sriov = devices.interfaces.iter().any(|i| i.sriov.is_some());
    if !devices.host_devices.is_empty() || !devices.gpus.is_empty() || sriov {
        overhead += 1024.0 * MI; // VFIO
    }
    let exec_probes = [&spec.liveness_probe, &spec.readiness_probe]
        .into_iter()
        .filter(|p| p.as_ref().is_some_and(|p| p.exec.is_some()))
        .count();
    if exec_probes > 0 {
        overhead += 100.0 * MI + 10.0 * MI * exec_probes as f64;
    }
    if devices.tpm.is_some() {
        overhead += 53.0 * MI;
    }
    if is_sev(spec) {
        overhead += 256.0 * MI;
    }
    if dedicated_cpus(spec, None) || wants_guaranteed_qos(spec) {
        overhead += 100.0 * MI;
    }
    if devices.interfaces.iter().any(|i| i.passt.is_some()) {
        overhead += 250.0 * MI;
    }
    overhead
}

/// What the launcher pod of this VMI requests, or `None` when nothing sizes its memory (KubeVirt
/// rejects such a VMI): CPU (shared over `cpuAllocationRatio`, or whole dedicated CPUs),
/// memory with overhead, hugepages, 50M of ephemeral storage, the device-plugin resources
/// (KVM, tun, vhost-net, SEV, TDX, GPUs and host devices by their resource names), and the
/// `guest-console-log` sidecar. Limits without requests count as KubeVirt's webhook and
/// renderer make them: the CPU limit is the CPU request, the memory limit the memory request.
#[must_use]
pub fn launcher_requests(
    spec: &VirtualMachineInstanceSpec,
    instancetype: Option<&InstancetypeSpec>,
    cluster: &ClusterConfig,
) -> Option<Requests> {
    let guest = guest_size(spec, instancetype);
    let spec_request = request(spec, "memory");
    let memory_request = match (instancetype, memory_request(spec)) {
        (_, Some(r)) => Some(r),
        (Some(it), None) => guest.memory.map(|m| {
            let percent = f64::from(it.memory.overcommit_percent.unwrap_or(0).min(100));
            m * (100.0 - percent) / 100.0
        }),
        (None, None) => guest
            .memory
            .map(|m| (m * 100.0 / f64::from(cluster.memory_overcommit.max(1))).floor()),
    }?;
    let overhead = memory_overhead(spec, guest);
    let overcommit_overhead = spec
        .domain
        .resources
        .as_ref()
        .and_then(|r| r.overcommit_guest_overhead)
        == Some(true);
    let mut requests = Requests::default();
    match hugepage_size(spec, instancetype) {
        Some(size) => {
            // RR:220-261: the hugepages carry the guest; memory is the overhead plus whatever
            // the request asks beyond the guest.
            let guest_bytes = guest.memory.unwrap_or(memory_request);
            let pages = memory_request.min(guest_bytes);
            requests.add(&format!("hugepages-{size}"), pages);
            requests.memory = overhead + (spec_request.unwrap_or(0.0) - guest_bytes).max(0.0);
        }
        None if overcommit_overhead => requests.memory = memory_request,
        None => requests.memory = memory_request + overhead,
    }
    let dedicated = dedicated_cpus(spec, instancetype);
    requests.cpu = if dedicated {
        let emulator =
            u32::from(spec.domain.cpu.as_ref().and_then(|c| c.isolate_emulator_thread) == Some(true));
        f64::from(guest.vcpus + emulator)
    } else {
        cpu_request(spec)
            .unwrap_or_else(|| f64::from(guest.vcpus) / f64::from(cluster.cpu_allocation_ratio.max(1)))
    };
    if let Some((cpu, memory)) = console_log_requests(spec, cluster, dedicated || wants_guaranteed_qos(spec))
    {
        requests.cpu += cpu;
        requests.memory += memory;
    }
    requests.add(
        "ephemeral-storage",
        50_000_000.0 + request(spec, "ephemeral-storage").unwrap_or(0.0),
    );
    devices::add_device_plugin_requests(spec, cluster, &mut requests);
    // Extended resources the VMI requests itself go to the compute container as they are.
    if let Some(res) = spec.domain.resources.as_ref() {
        for (name, q) in res.requests.iter().chain(&res.limits) {
            if !matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
                && requests.get(name) == 0.0
                && let Ok(v) = parse_quantity(q)
            {
                requests.add(name, v);
            }
        }
    }
    Some(requests)
}

/// [`launcher_requests`] of a VMI without an instancetype, plus the resources of its
/// Multus networks whose NADs `snapshot` holds.
#[must_use]
pub fn vmi_launcher_requests(
    snapshot: &crate::snapshot::ClusterSnapshot,
    vmi: &crate::kubevirt::VirtualMachineInstance,
    cluster: &crate::effective::ClusterConfig,
) -> Option<Requests> {
    let mut requests = launcher_requests(&vmi.spec, None, cluster)?;
    let namespace = vmi.metadata.namespace.as_deref().unwrap_or("default");
    requests += &network_resources(&vmi.spec, namespace, &snapshot.network_attachment_definitions).requests;
    Some(requests)
}

#[cfg(test)]
mod tests;
