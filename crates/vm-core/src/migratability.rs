//! Whether a VMI can be live-migrated, as virt-handler's `calculateLiveMigrationCondition`
//! decides it: the VMI's own `LiveMigratable` condition when KubeVirt has set it, else the same
//! checks computed from the spec (reference §4, first matching reason wins).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::kubevirt::{VirtualMachineInstanceSpec, VirtualMachineInstanceStatus};

/// Annotation that lets a VMI with a bridge on the pod network migrate anyway.
pub const ALLOW_BRIDGE_MIGRATION: &str = "kubevirt.io/allow-pod-bridge-network-live-migration";

/// The verdict on live migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Migratability {
    /// Nothing stops a live migration.
    Migratable,
    /// KubeVirt refuses to migrate it.
    NotMigratable {
        /// KubeVirt's condition reason, e.g. `DisksNotLiveMigratable`.
        reason: String,
        /// What in the VMI causes it.
        message: String,
        /// True when read from the VMI's status rather than computed from its spec.
        reported: bool,
    },
    /// Depends on objects not in the snapshot (a PVC whose access modes are unknown).
    Unknown(String),
}

/// Everything about a VMI that decides its migratability.
pub struct MigratabilityInput<'a> {
    /// The VMI's (or template's) annotations.
    pub annotations: &'a BTreeMap<String, String>,
    /// The VMI's (or template's) spec.
    pub spec: &'a VirtualMachineInstanceSpec,
    /// The VMI's status, when a VMI exists.
    pub status: Option<&'a VirtualMachineInstanceStatus>,
    /// The namespace the claims live in.
    pub namespace: &'a str,
    /// Claims known to the snapshot.
    pub pvcs: &'a [PersistentVolumeClaim],
}

/// Decides live-migratability for `input`.
#[must_use]
pub fn live_migratability(input: &MigratabilityInput<'_>) -> Migratability {
    if let Some(cond) = input.status.and_then(|s| s.condition("LiveMigratable")) {
        return if cond.status == "True" {
            Migratability::Migratable
        } else {
            Migratability::NotMigratable {
                reason: cond.reason.clone().unwrap_or_else(|| "NotMigratable".into()),
                message: cond.message.clone().unwrap_or_default(),
                reported: true,
            }
        };
    }
    let not = |reason: &str, message: String| Migratability::NotMigratable {
        reason: reason.into(),
        message,
        reported: false,
    };
    let spec = input.spec;
    if let Some(name) = bridged_pod_interface(spec)
        && !input.annotations.contains_key(ALLOW_BRIDGE_MIGRATION)
    {
        return not(
            "InterfaceNotLiveMigratable",
            format!("interface {name} uses bridge binding on the pod network"),
        );
    }
    let devices = &spec.domain.devices;
    if !devices.host_devices.is_empty() {
        return not("HostDeviceNotLiveMigratable", "the VMI uses hostDevices".into());
    }
    if !devices.gpus.is_empty() {
        return not("HostDeviceNotLiveMigratable", "the VMI uses GPUs".into());
    }
    if spec.domain.launch_security.is_some() {
        return not("SEVNotLiveMigratable", "the VMI uses launchSecurity (SEV)".into());
    }
    let mut unknown = None;
    for volume in &spec.volumes {
        if let Some(disk) = &volume.host_disk
            && disk.shared != Some(true)
        {
            return not(
                "DisksNotLiveMigratable",
                format!(
                    "volume {} is a hostDisk ({}) that is not shared",
                    volume.name, disk.path
                ),
            );
        }
        let claim = volume
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str())
            .or_else(|| volume.data_volume.as_ref().map(|d| d.name.as_str()));
        let Some(claim) = claim else { continue };
        match find_pvc(input.pvcs, input.namespace, claim) {
            Some(pvc) if !is_shared(pvc) => {
                return not(
                    "DisksNotLiveMigratable",
                    format!(
                        "PVC {claim} (volume {}) is not ReadWriteMany; live migration requires that all PVCs are shared",
                        volume.name
                    ),
                );
            }
            Some(_) => {}
            None => {
                unknown = Some(format!(
                    "PVC {claim} is not known, so its access mode is not either"
                ))
            }
        }
    }
    unknown.map_or(Migratability::Migratable, Migratability::Unknown)
}

/// The name of the interface that binds the pod network with `bridge`, if any.
fn bridged_pod_interface(spec: &VirtualMachineInstanceSpec) -> Option<&str> {
    let pod_network = spec.networks.iter().find(|n| n.pod.is_some())?;
    let iface = spec
        .domain
        .devices
        .interfaces
        .iter()
        .find(|i| i.name == pod_network.name)?;
    iface.bridge.is_some().then_some(iface.name.as_str())
}

fn find_pvc<'a>(
    pvcs: &'a [PersistentVolumeClaim],
    namespace: &str,
    name: &str,
) -> Option<&'a PersistentVolumeClaim> {
    pvcs.iter().find(|p| {
        p.metadata.name.as_deref() == Some(name)
            && p.metadata.namespace.as_deref().unwrap_or("default") == namespace
    })
}

/// Whether a claim can be attached to two nodes at once (ReadWriteMany).
#[must_use]
pub fn is_shared(pvc: &PersistentVolumeClaim) -> bool {
    let modes = pvc.spec.as_ref().and_then(|s| s.access_modes.as_ref());
    let status_modes = pvc.status.as_ref().and_then(|s| s.access_modes.as_ref());
    status_modes
        .or(modes)
        .is_some_and(|m| m.iter().any(|m| m == "ReadWriteMany"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(
        spec: &str,
        annotations: &[(&str, &str)],
        status: Option<&str>,
        pvcs: &[&str],
    ) -> Migratability {
        let spec: VirtualMachineInstanceSpec = serde_yaml::from_str(spec).unwrap();
        let status: Option<VirtualMachineInstanceStatus> = status.map(|s| serde_yaml::from_str(s).unwrap());
        let pvcs: Vec<PersistentVolumeClaim> =
            pvcs.iter().map(|p| serde_yaml::from_str(p).unwrap()).collect();
        let annotations = annotations
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        live_migratability(&MigratabilityInput {
            annotations: &annotations,
            spec: &spec,
            status: status.as_ref(),
            namespace: "prod",
            pvcs: &pvcs,
        })
    }

    const RWO: &str = "metadata: {name: data, namespace: prod}\nspec: {accessModes: [ReadWriteOnce]}";
    const RWX: &str = "metadata: {name: data, namespace: prod}\nspec: {accessModes: [ReadWriteMany]}";

    #[test]
    fn status_condition_wins() {
        let v = verdict(
            "{}",
            &[],
            Some(
                "conditions: [{type: LiveMigratable, status: 'False', reason: DisksNotLiveMigratable, message: nope}]",
            ),
            &[],
        );
        assert!(
            matches!(v, Migratability::NotMigratable { ref reason, reported: true, .. } if reason == "DisksNotLiveMigratable")
        );
    }

    #[test]
    fn rwo_claim_blocks_rwx_does_not_unknown_is_unknown() {
        let spec = "volumes: [{name: disk0, persistentVolumeClaim: {claimName: data}}]";
        assert!(
            matches!(verdict(spec, &[], None, &[RWO]), Migratability::NotMigratable { ref reason, .. } if reason == "DisksNotLiveMigratable")
        );
        assert_eq!(verdict(spec, &[], None, &[RWX]), Migratability::Migratable);
        assert!(matches!(verdict(spec, &[], None, &[]), Migratability::Unknown(_)));
    }

    #[test]
    fn bridge_on_pod_network_needs_the_annotation() {
        let spec = "domain: {devices: {interfaces: [{name: default, bridge: {}}]}}\nnetworks: [{name: default, pod: {}}]";
        assert!(
            matches!(verdict(spec, &[], None, &[]), Migratability::NotMigratable { ref reason, .. } if reason == "InterfaceNotLiveMigratable")
        );
        assert_eq!(
            verdict(spec, &[(ALLOW_BRIDGE_MIGRATION, "")], None, &[]),
            Migratability::Migratable
        );
    }

    #[test]
    fn host_devices_and_host_disks_block() {
        assert!(matches!(
            verdict(
                "domain: {devices: {hostDevices: [{name: nic, deviceName: x}]}}",
                &[],
                None,
                &[]
            ),
            Migratability::NotMigratable { .. }
        ));
        assert!(matches!(
            verdict(
                "volumes: [{name: h, hostDisk: {path: /d.img, type: Disk}}]",
                &[],
                None,
                &[]
            ),
            Migratability::NotMigratable { .. }
        ));
        assert_eq!(
            verdict(
                "volumes: [{name: h, hostDisk: {path: /d.img, shared: true}}]",
                &[],
                None,
                &[]
            ),
            Migratability::Migratable
        );
    }
}
