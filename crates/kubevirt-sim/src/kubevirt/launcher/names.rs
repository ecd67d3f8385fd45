//! The fixed names a launcher pod carries: the virt-launcher image and the readiness gate
//! (KubeVirt: `pkg/virt-controller/services/template.go`). A module of its own so that
//! the console-log sidecar ([`crate::kubevirt::console_log`]) names the same image without
//! depending on the renderer that includes it.

/// The launcher container image the simulator reports.
pub const LAUNCHER_IMAGE: &str = "quay.io/kubevirt/virt-launcher:v1.6.0";
/// The readiness gate of launcher pods, True while the VMI is not paused.
pub const UNPAUSED_GATE: &str = "kubevirt.io/virtual-machine-unpaused";
