//! The `guest-console-log` container KubeVirt adds to every launcher pod that logs its serial
//! console (`pkg/virt-controller/services/serialconsolelog.go`). It is a native sidecar, so
//! its requests add to the pod's: 5m CPU and 35M memory by default, its limits (15m / 60M)
//! when the guest has dedicated CPUs or the pod is Guaranteed, and the KubeVirt CR's
//! `supportContainerResources` entry of type `guest-console-log` over either.

use crate::effective::ClusterConfig;
use crate::kubevirt::VirtualMachineInstanceSpec;

/// Whether the launcher pod gets the container (`isSerialConsoleLogEnabled`): not without a
/// serial console (`autoattachSerialConsole: false`); else the VMI's `logSerialConsole` when
/// set; else on unless the KubeVirt CR sets `virtualMachineOptions.disableSerialConsoleLog`.
#[must_use]
pub fn console_log_enabled(spec: &VirtualMachineInstanceSpec, cluster: &ClusterConfig) -> bool {
    let devices = &spec.domain.devices;
    if devices.autoattach_serial_console == Some(false) {
        return false;
    }
    devices
        .log_serial_console
        .unwrap_or(!cluster.serial_console_log_disabled)
}

/// The container's CPU (cores) and memory (bytes) requests, or `None` when the pod has no such
/// container. `guaranteed` is true for dedicated CPUs or a Guaranteed pod: requests equal limits.
#[must_use]
pub fn console_log_requests(
    spec: &VirtualMachineInstanceSpec,
    cluster: &ClusterConfig,
    guaranteed: bool,
) -> Option<(f64, f64)> {
    if !console_log_enabled(spec, cluster) {
        return None;
    }
    let c = cluster.console_log;
    Some(if guaranteed {
        (c.limit_cpu, c.limit_memory)
    } else {
        (c.request_cpu, c.request_memory)
    })
}
