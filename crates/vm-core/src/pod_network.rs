//! The pod network as KubeVirt leaves a VMI after admission, and whether its interface lets
//! the VMI live-migrate.
//!
//! A VMI that declares no interfaces and no networks (and does not set
//! `autoattachPodInterface: false`) gets an interface `default` on the pod network, bound as
//! the cluster's `network.defaultNetworkInterface` says: `bridge` unless the KubeVirt CR says
//! otherwise (`pkg/network/vmispec/defaults.go` `SetDefaultNetworkInterface`,
//! `pkg/virt-config/virt-config.go` `DefaultNetworkInterface`). Many manifests, KubeVirt's
//! own examples among them, declare no interface, so this default decides their
//! live-migratability: virt-handler refuses to migrate a pod-network interface that is not
//! masquerade, passt or a binding plugin that declares migration, and a bridge only migrates
//! with the annotation `kubevirt.io/allow-pod-bridge-network-live-migration`
//! (`pkg/network/vmispec/interface.go` `VerifyVMIMigratable`).

use std::collections::BTreeMap;

use crate::effective::ClusterConfig;
use crate::kubevirt::VirtualMachineInstanceSpec;

/// Annotation that lets a VMI with a bridge on the pod network migrate anyway.
pub const ALLOW_BRIDGE_MIGRATION: &str = "kubevirt.io/allow-pod-bridge-network-live-migration";

/// The name KubeVirt gives the interface and network it adds.
pub const DEFAULT_INTERFACE_NAME: &str = "default";

/// Whether a VMI spec declares neither interfaces nor networks and keeps the pod interface, so
/// that the webhook adds the cluster's default one.
#[must_use]
pub fn gets_default_interface(spec: &VirtualMachineInstanceSpec) -> bool {
    spec.domain.devices.autoattach_pod_interface != Some(false)
        && spec.networks.is_empty()
        && spec.domain.devices.interfaces.is_empty()
}

/// Why the pod-network interface keeps a VMI from live-migrating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceBlocker {
    /// What KubeVirt objects to, in a sentence.
    pub message: String,
    /// How to make it migratable.
    pub fix: String,
}

/// The interface check of virt-handler's live-migration condition, on the spec as admission
/// leaves it: `None` when the pod network (if any) does not stop a live migration.
#[must_use]
pub fn interface_blocker(
    spec: &VirtualMachineInstanceSpec,
    annotations: &BTreeMap<String, String>,
    cluster: &ClusterConfig,
) -> Option<InterfaceBlocker> {
    let allowed = annotations.contains_key(ALLOW_BRIDGE_MIGRATION);
    if gets_default_interface(spec) {
        // Only `bridge` and `masquerade` add an interface; any other default adds the pod
        // network alone, and a VMI without interfaces is not checked.
        if cluster.default_network_interface != "bridge" || allowed {
            return None;
        }
        let from = cluster.default_network_interface_from.as_ref().map_or_else(
            || "KubeVirt's default, as no KubeVirt CR sets spec.configuration.network.defaultNetworkInterface".to_string(),
            |cr| format!("spec.configuration.network.defaultNetworkInterface of KubeVirt CR {cr}"),
        );
        return Some(InterfaceBlocker {
            message: format!(
                "the VM declares no interface, so KubeVirt gives it the pod network with the cluster's default binding bridge ({from}), and bridge on the pod network cannot be live-migrated"
            ),
            fix: format!(
                "declare the pod network with masquerade binding (networks: [{{name: default, pod: {{}}}}], interfaces: [{{name: default, masquerade: {{}}}}]), or set spec.configuration.network.defaultNetworkInterface: masquerade in the KubeVirt CR, or annotate the VM's template with {ALLOW_BRIDGE_MIGRATION}"
            ),
        });
    }
    let interfaces = &spec.domain.devices.interfaces;
    if interfaces.is_empty() {
        return None;
    }
    let pod = spec.networks.iter().find(|n| n.pod.is_some())?;
    let Some(iface) = interfaces.iter().find(|i| i.name == pod.name) else {
        return Some(InterfaceBlocker {
            message: format!("no interface is declared for the pod network {}", pod.name),
            fix: format!("declare interface {} with masquerade binding", pod.name),
        });
    };
    if iface.masquerade.is_some() || iface.passt.is_some() {
        return None;
    }
    let plugin = iface
        .binding
        .as_ref()
        .and_then(|b| b.get("name"))
        .and_then(serde_json::Value::as_str);
    let message = match plugin {
        _ if iface.bridge.is_some() && allowed => return None,
        _ if iface.bridge.is_some() => {
            format!("interface {} uses bridge binding on the pod network", iface.name)
        }
        Some(p) if cluster.migratable_binding_plugins.contains(p) => return None,
        Some(p) => format!(
            "interface {} on the pod network uses binding plugin {p}, which the KubeVirt CR does not declare with migration",
            iface.name
        ),
        None => format!(
            "interface {} on the pod network is neither masquerade, passt nor a migratable binding plugin",
            iface.name
        ),
    };
    Some(InterfaceBlocker {
        message,
        fix: format!(
            "bind interface {} with masquerade: {{}}, or annotate the VM's template with {ALLOW_BRIDGE_MIGRATION} (bridge only)",
            iface.name
        ),
    })
}

#[cfg(test)]
mod tests;
