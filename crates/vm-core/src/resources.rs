//! Guest size and the requests of the virt-launcher pod that runs a VMI, overhead included.
//!
//! The scheduler places the launcher pod, not the guest, so capacity checks must add what
//! KubeVirt adds (reference §8: `renderresources.go`, `hypervisorbackend.go`).

use crate::effective::ClusterConfig;
use crate::kubevirt::{InstancetypeSpec, VirtualMachineInstanceSpec};
use crate::quantity::parse_quantity;

const MI: f64 = 1024.0 * 1024.0;

/// The CPU and memory a virt-launcher pod requests from the scheduler.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Requests {
    /// Cores.
    pub cpu: f64,
    /// Bytes.
    pub memory: f64,
}

impl std::ops::Add for Requests {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            cpu: self.cpu + other.cpu,
            memory: self.memory + other.memory,
        }
    }
}

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
            cpu.cores.unwrap_or(1) * cpu.sockets.unwrap_or(1) * cpu.threads.unwrap_or(1)
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

/// KubeVirt's memory overhead for the launcher pod (reference §8), in bytes.
#[must_use]
pub fn memory_overhead(spec: &VirtualMachineInstanceSpec, guest: GuestSize) -> f64 {
    let devices = &spec.domain.devices;
    let mut overhead = guest.memory.unwrap_or(0.0) / 512.0 // page tables
        + 240.0 * MI // virt-launcher, monitor, virtlogd, virtqemud, qemu
        + 8.0 * MI * f64::from(guest.vcpus)
        + 8.0 * MI; // IOThread
    if devices.autoattach_graphics_device != Some(false) {
        overhead += 32.0 * MI;
    }
    if !devices.host_devices.is_empty() || !devices.gpus.is_empty() {
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
    if spec.domain.launch_security.is_some() {
        overhead += 256.0 * MI;
    }
    if spec.domain.cpu.as_ref().and_then(|c| c.dedicated_cpu_placement) == Some(true) {
        overhead += 100.0 * MI;
    }
    overhead
}

/// What the launcher pod of this VMI requests, or `None` when nothing sizes its memory (KubeVirt
/// rejects such a VMI).
#[must_use]
pub fn launcher_requests(
    spec: &VirtualMachineInstanceSpec,
    instancetype: Option<&InstancetypeSpec>,
    cluster: &ClusterConfig,
) -> Option<Requests> {
    let guest = guest_size(spec, instancetype);
    let memory_request = match instancetype {
        Some(it) => guest.memory.map(|m| {
            let percent = f64::from(it.memory.overcommit_percent.unwrap_or(0).min(100));
            m * (100.0 - percent) / 100.0
        }),
        None => request(spec, "memory").or_else(|| {
            guest
                .memory
                .map(|m| m * 100.0 / f64::from(cluster.memory_overcommit.max(1)))
        }),
    }?;
    let overcommit_overhead = spec
        .domain
        .resources
        .as_ref()
        .and_then(|r| r.overcommit_guest_overhead)
        == Some(true);
    let overhead = if overcommit_overhead {
        0.0
    } else {
        memory_overhead(spec, guest)
    };
    let cpu = request(spec, "cpu")
        .or_else(|| limit(spec, "cpu"))
        .unwrap_or_else(|| f64::from(guest.vcpus) / f64::from(cluster.cpu_allocation_ratio.max(1)));
    Some(Requests {
        cpu,
        memory: memory_request + overhead,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> VirtualMachineInstanceSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn requests_add_kubevirt_overhead() {
        let s = spec("domain: {resources: {requests: {memory: 1Gi}}, cpu: {cores: 2}}");
        let r = launcher_requests(&s, None, &ClusterConfig::defaults()).unwrap();
        // 1Gi + 1Gi/512 (2Mi) + 240Mi + 16Mi + 8Mi + 32Mi
        assert_eq!(
            r.memory,
            1024.0 * MI + 2.0 * MI + 240.0 * MI + 16.0 * MI + 8.0 * MI + 32.0 * MI
        );
        assert!((r.cpu - 0.2).abs() < 1e-9, "2 vCPUs / ratio 10");
    }

    #[test]
    fn explicit_cpu_request_wins_and_overhead_can_be_dropped() {
        let s = spec(
            "domain: {resources: {requests: {memory: 2Gi, cpu: '1500m'}, overcommitGuestOverhead: true}}",
        );
        let r = launcher_requests(&s, None, &ClusterConfig::defaults()).unwrap();
        assert_eq!(r.memory, 2048.0 * MI);
        assert_eq!(r.cpu, 1.5);
    }

    #[test]
    fn instancetype_sizes_the_guest() {
        let it: InstancetypeSpec = serde_yaml::from_str("{cpu: {guest: 4}, memory: {guest: 8Gi}}").unwrap();
        let s = spec("domain: {devices: {autoattachGraphicsDevice: false}}");
        let g = guest_size(&s, Some(&it));
        assert_eq!(g.vcpus, 4);
        let r = launcher_requests(&s, Some(&it), &ClusterConfig::defaults()).unwrap();
        assert_eq!(
            r.memory,
            8192.0 * MI + 16.0 * MI + 240.0 * MI + 32.0 * MI + 8.0 * MI
        );
    }

    #[test]
    fn no_memory_means_no_requests() {
        assert!(
            launcher_requests(
                &spec("domain: {cpu: {cores: 1}}"),
                None,
                &ClusterConfig::defaults()
            )
            .is_none()
        );
    }
}
