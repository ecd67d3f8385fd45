//! What KubeVirt's mutating webhook writes into a VMI's resources before virt-controller
//! renders its launcher pod, as far as the pod's requests depend on it
//! (`pkg/defaults/defaults.go` `setDefaultResourceRequests`, then
//! `staging/src/kubevirt.io/api/core/v1/types.go` `WantsToHaveQOSGuaranteed` on the result).
//!
//! A VMI written with limits and no requests is common (it reads like a pod's Guaranteed
//! spec). KubeVirt copies the CPU limit into the missing CPU request; the memory limit
//! becomes the memory request when the pod is rendered (`renderresources.go`
//! `WithMemoryRequests`); and a VMI whose CPU request equals its CPU limit and whose memory
//! request equals its limit (or is missing beside a limit) is rendered Guaranteed, which costs
//! 100Mi more overhead and larger support containers.

use crate::kubevirt::VirtualMachineInstanceSpec;
use crate::quantity::parse_quantity;

/// A non-zero quantity of `name` in the VMI's `requests` (`limits` when `limits` is true).
fn quantity(spec: &VirtualMachineInstanceSpec, name: &str, limits: bool) -> Option<f64> {
    let res = spec.domain.resources.as_ref()?;
    let map = if limits { &res.limits } else { &res.requests };
    map.get(name)
        .and_then(|q| parse_quantity(q).ok())
        .filter(|v| *v != 0.0)
}

/// The CPU request after `setDefaultResourceRequests`: the VMI's own, else its CPU limit.
#[must_use]
pub fn cpu_request(spec: &VirtualMachineInstanceSpec) -> Option<f64> {
    quantity(spec, "cpu", false).or_else(|| quantity(spec, "cpu", true))
}

/// The memory request the compute container gets before overhead, when the VMI sets one: its
/// own, else its memory limit (`WithMemoryRequests`).
#[must_use]
pub fn memory_request(spec: &VirtualMachineInstanceSpec) -> Option<f64> {
    quantity(spec, "memory", false).or_else(|| quantity(spec, "memory", true))
}

/// `WantsToHaveQOSGuaranteed` on the defaulted VMI: the CPU request (the limit copied in when
/// missing) equals the CPU limit, and the memory request equals the memory limit or is missing
/// beside one.
#[must_use]
pub fn wants_guaranteed_qos(spec: &VirtualMachineInstanceSpec) -> bool {
    let memory = match (quantity(spec, "memory", false), quantity(spec, "memory", true)) {
        (None, Some(_)) => true,
        (Some(r), Some(l)) => r == l,
        _ => false,
    };
    let cpu = match (cpu_request(spec), quantity(spec, "cpu", true)) {
        (Some(r), Some(l)) => r == l,
        _ => false,
    };
    memory && cpu
}
