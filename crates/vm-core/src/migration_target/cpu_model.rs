//! The CPU model a VMI runs with once KubeVirt's webhook has defaulted it
//! (`pkg/defaults/defaults.go` `setDefaultCPUArch`): the VMI's own; else, on arm64,
//! `host-passthrough` (`pkg/defaults/arm64.go`, applied before the cluster default, so the
//! cluster's `cpuModel` never reaches an arm64 VMI); else the KubeVirt CR's `cpuModel`; else
//! `host-model`.
//!
//! The model decides the launcher's `cpu-model.node.kubevirt.io/<M>` selector (none for
//! host-model and host-passthrough), the obsolete-host-model affinity (host-model only), and
//! the source node's host model and features a migration target must match (host-model only,
//! `pkg/virt-controller/watch/migration/migration.go`). virt-handler blocks live migration for
//! a host-model guest on a node without a host model, and never for host-passthrough
//! (`pkg/virt-handler/vm.go` `isHostModelMigratable`).

use crate::effective::ClusterConfig;
use crate::kubevirt::VirtualMachineInstance;

/// KubeVirt's default CPU model on amd64 and s390x.
pub const HOST_MODEL: &str = "host-model";
/// KubeVirt's default CPU model on arm64.
pub const HOST_PASSTHROUGH: &str = "host-passthrough";

/// The defaulted CPU model of `vmi`, with where it came from in words.
#[must_use]
pub fn effective_cpu_model(vmi: &VirtualMachineInstance, cluster: &ClusterConfig) -> (String, String) {
    if let Some(m) = vmi
        .spec
        .domain
        .cpu
        .as_ref()
        .and_then(|c| c.model.as_deref())
        .filter(|m| !m.is_empty())
    {
        return (m.to_string(), format!("CPU model {m}"));
    }
    if vmi.spec.architecture.as_deref().map(str::to_lowercase).as_deref() == Some("arm64") {
        return (
            HOST_PASSTHROUGH.into(),
            "arm64's default CPU model host-passthrough".into(),
        );
    }
    match cluster.cpu_model.as_deref() {
        Some(m) => (m.to_string(), format!("the cluster's default CPU model {m}")),
        None => (HOST_MODEL.into(), "the default CPU model host-model".into()),
    }
}
