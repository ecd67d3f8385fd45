//! The device-plugin resources of a launcher pod's compute container
//! (`pkg/virt-controller/services/renderresources.go`, rules listed in `template.go`): KVM,
//! tun and vhost-net for the pod network, `devices.kubevirt.io/sev` for SEV and SEV-SNP
//! guests, `devices.kubevirt.io/tdx` for TDX guests, and one of each GPU's and host device's
//! resource name. KubeVirt sets them as limits; API defaulting makes them the requests.

use super::requests::Requests;
use crate::effective::ClusterConfig;
use crate::kubevirt::VirtualMachineInstanceSpec;
use crate::pod_network::gets_default_interface;

/// The KVM device every launcher pod takes (unless KubeVirt runs with emulation).
pub const KVM_DEVICE: &str = "devices.kubevirt.io/kvm";
/// The tun device for the pod network.
pub const TUN_DEVICE: &str = "devices.kubevirt.io/tun";
/// The vhost-net device for virtio interfaces.
pub const VHOST_NET_DEVICE: &str = "devices.kubevirt.io/vhost-net";
/// The SEV device of SEV, SEV-ES and SEV-SNP guests.
pub const SEV_DEVICE: &str = "devices.kubevirt.io/sev";
/// The TDX device of TDX guests.
pub const TDX_DEVICE: &str = "devices.kubevirt.io/tdx";

/// Whether the guest uses AMD SEV or SEV-SNP (`pkg/util/amd64.go` `IsSEVVMI`).
#[must_use]
pub fn is_sev(spec: &VirtualMachineInstanceSpec) -> bool {
    spec.domain
        .launch_security
        .as_ref()
        .is_some_and(|ls| ls.get("sev").is_some() || ls.get("snp").is_some())
}

/// Whether the guest uses Intel TDX (`pkg/util/amd64.go` `IsTDXVMI`).
#[must_use]
pub fn is_tdx(spec: &VirtualMachineInstanceSpec) -> bool {
    spec.domain
        .launch_security
        .as_ref()
        .is_some_and(|ls| ls.get("tdx").is_some())
}

/// Adds the device-plugin resources of `spec` to `requests`. The interface KubeVirt adds to a
/// VMI that declares none (see [`crate::pod_network`]) is a virtio one: it takes tun and
/// vhost-net; with `autoattachPodInterface: false` and no interface the pod takes neither
/// (`pkg/network/vmispec/devices.go`, `interface.go`).
pub fn add_device_plugin_requests(
    spec: &VirtualMachineInstanceSpec,
    cluster: &ClusterConfig,
    requests: &mut Requests,
) {
    requests.add(KVM_DEVICE, 1.0);
    let devices = &spec.domain.devices;
    let interfaces = &devices.interfaces;
    let defaulted = gets_default_interface(spec)
        && matches!(
            cluster.default_network_interface.as_str(),
            "bridge" | "masquerade"
        );
    if !interfaces.is_empty() || devices.autoattach_pod_interface != Some(false) {
        requests.add(TUN_DEVICE, 1.0);
    }
    let virtio = interfaces
        .iter()
        .any(|i| i.model.as_deref().is_none_or(|m| m.is_empty() || m == "virtio"));
    if virtio || defaulted {
        requests.add(VHOST_NET_DEVICE, 1.0);
    }
    for device in devices.gpus.iter().chain(&devices.host_devices) {
        if let Some(name) = device.get("deviceName").and_then(|n| n.as_str()) {
            requests.add(name, 1.0);
        }
    }
    if is_sev(spec) {
        requests.add(SEV_DEVICE, 1.0);
    }
    if is_tdx(spec) {
        requests.add(TDX_DEVICE, 1.0);
    }
}
