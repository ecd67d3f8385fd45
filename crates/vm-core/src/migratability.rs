//! Whether a VMI can be live-migrated, as virt-handler's `calculateLiveMigrationCondition`
//! (`pkg/virt-handler/vm.go`) decides it: the VMI's own `LiveMigratable` condition when KubeVirt
//! has set it, else the same checks computed from the spec as admission leaves it (the pod
//! network the webhook adds included, see [`crate::pod_network`]), first matching reason wins.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::datavolume::{ClaimModes, ModesFrom, StorageObjects, VolumeClaim, resolve_claim};
use crate::effective::ClusterConfig;
use crate::kubevirt::{DataVolumeTemplateSpec, VirtualMachineInstanceSpec, VirtualMachineInstanceStatus};
pub use crate::pod_network::ALLOW_BRIDGE_MIGRATION;
use crate::pod_network::interface_blocker;

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
    Unknown {
        /// What is not known, in a sentence.
        why: String,
        /// What to add (to the input, or to an object) so that it can be decided.
        add: String,
    },
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
    /// Claims, DataVolumes, StorageProfiles and StorageClasses known to the snapshot.
    pub storage: StorageObjects<'a>,
    /// The `spec.dataVolumeTemplates` of the VM (empty without one): the DataVolumes that the
    /// VM controller creates, whose PVCs may not exist yet.
    pub data_volume_templates: &'a [DataVolumeTemplateSpec],
    /// The cluster's configuration: its default pod-network binding and binding plugins.
    pub cluster: &'a ClusterConfig,
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
    if let Some(blocker) = interface_blocker(spec, input.annotations, input.cluster) {
        return not("InterfaceNotLiveMigratable", blocker.message);
    }
    let devices = &spec.domain.devices;
    if !devices.host_devices.is_empty() {
        return not("HostDeviceNotLiveMigratable", "the VMI uses hostDevices".into());
    }
    if !devices.gpus.is_empty() {
        return not("HostDeviceNotLiveMigratable", "the VMI uses GPUs".into());
    }
    // vm.go: SEV (or SNP), else TDX (`pkg/util/amd64.go`), then IBM Secure Execution, which is
    // any launchSecurity on s390x (`pkg/util/s390x.go`); the messages are KubeVirt's.
    if let Some(ls) = spec.domain.launch_security.as_ref() {
        if ls.get("sev").is_some() || ls.get("snp").is_some() {
            return not("SEVNotLiveMigratable", "VMI uses SEV".into());
        }
        if ls.get("tdx").is_some() {
            return not("TDXNotLiveMigratable", "VMI uses TDX".into());
        }
        if spec.architecture.as_deref() == Some("s390x") {
            return not(
                "SecureExecutionNotLiveMigratable",
                "VMI uses Secure Execution".into(),
            );
        }
    }
    let passthrough = spec
        .domain
        .features
        .as_ref()
        .and_then(|f| f.pointer("/hypervPassthrough/enabled"))
        .and_then(serde_json::Value::as_bool);
    if passthrough == Some(true) {
        return not(
            "HypervPassthroughNotLiveMigratable",
            "VMI uses hyperv passthrough".into(),
        );
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
        let (claim, data_volume) = match (&volume.persistent_volume_claim, &volume.data_volume) {
            (Some(c), _) => (c.claim_name.as_str(), false),
            (None, Some(d)) => (d.name.as_str(), true),
            (None, None) => continue,
        };
        let resolved = resolve_claim(input.storage, input.namespace, input.data_volume_templates, claim);
        match resolved {
            VolumeClaim::Pvc(pvc) if is_shared(pvc) => {}
            VolumeClaim::Pvc(pvc) if data_volume => {
                return not(
                    "DisksNotLiveMigratable",
                    data_volume_not_shared(claim, &volume.name, &pvc_modes(pvc), None),
                );
            }
            VolumeClaim::Pvc(_) => {
                return not(
                    "DisksNotLiveMigratable",
                    format!(
                        "PVC {claim} (volume {}) is not ReadWriteMany; live migration requires that all PVCs are shared",
                        volume.name
                    ),
                );
            }
            VolumeClaim::DataVolume(dv) => match dv.modes {
                ClaimModes::Known {
                    access_modes, from, ..
                } => {
                    if !access_modes.iter().any(|m| m == "ReadWriteMany") {
                        return not(
                            "DisksNotLiveMigratable",
                            data_volume_not_shared(claim, &volume.name, &access_modes, Some(&from)),
                        );
                    }
                }
                ClaimModes::Unknown { why, add } => {
                    unknown.get_or_insert(Migratability::Unknown { why, add });
                }
            },
            VolumeClaim::NotFound => {
                unknown.get_or_insert(Migratability::Unknown {
                    why: format!(
                        "PVC {claim} is not known, nor a DataVolume {claim} that would create it, so its access mode is not either"
                    ),
                    add: format!(
                        "include PVC {claim} or DataVolume {claim} (or the VM's dataVolumeTemplates entry {claim}) in the input, or audit the live cluster"
                    ),
                });
            }
        }
    }
    unknown.unwrap_or(Migratability::Migratable)
}

/// The message for a DataVolume whose PVC is not ReadWriteMany. `from` is where the access
/// modes came from when the PVC does not exist yet; it is named only when the DataVolume did
/// not state them itself (a StorageProfile decided), so that a DataVolume that states its modes
/// reads the same before and after CDI created its PVC.
fn data_volume_not_shared(
    name: &str,
    volume: &str,
    access_modes: &[String],
    from: Option<&ModesFrom>,
) -> String {
    let modes = if access_modes.is_empty() {
        "has no access mode".to_string()
    } else {
        format!("is {}", access_modes.join(", "))
    };
    let from = match from {
        Some(ModesFrom::StorageProfile {
            class,
            default_class: false,
        }) => format!(", from StorageProfile {class}"),
        Some(ModesFrom::StorageProfile {
            class,
            default_class: true,
        }) => format!(", from StorageProfile {class} of the default StorageClass"),
        Some(ModesFrom::PvcSpec | ModesFrom::StorageSpec) | None => String::new(),
    };
    format!(
        "DataVolume {name} (PVC {name} that CDI creates, volume {volume}) {modes}{from}; live migration requires that all PVCs are shared (ReadWriteMany)"
    )
}

/// A claim's access modes: the bound ones, else the requested ones.
fn pvc_modes(pvc: &PersistentVolumeClaim) -> Vec<String> {
    let spec_modes = pvc.spec.as_ref().and_then(|s| s.access_modes.as_ref());
    let status_modes = pvc.status.as_ref().and_then(|s| s.access_modes.as_ref());
    status_modes.or(spec_modes).cloned().unwrap_or_default()
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
            storage: StorageObjects {
                pvcs: &pvcs,
                ..StorageObjects::default()
            },
            data_volume_templates: &[],
            cluster: &masquerade_by_default(),
        })
    }

    /// A cluster whose KubeVirt CR makes masquerade the default pod binding, so that the
    /// specs below, which declare no interface, are judged on their other parts.
    fn masquerade_by_default() -> ClusterConfig {
        ClusterConfig {
            default_network_interface: "masquerade".into(),
            ..ClusterConfig::defaults()
        }
    }

    /// `pkg/network/vmispec/defaults.go`: no interfaces and no networks get the cluster's
    /// default binding, bridge unless the KubeVirt CR says otherwise, and virt-handler
    /// (`pkg/virt-handler/vm.go`) reports InterfaceNotLiveMigratable for it.
    #[test]
    fn a_vm_without_interfaces_gets_the_clusters_default_bridge_and_does_not_migrate() {
        let spec = VirtualMachineInstanceSpec::default();
        let annotations = BTreeMap::new();
        let input = |cluster| MigratabilityInput {
            annotations: &annotations,
            spec: &spec,
            status: None,
            namespace: "prod",
            storage: StorageObjects::default(),
            data_volume_templates: &[],
            cluster,
        };
        let defaults = ClusterConfig::defaults();
        assert!(matches!(
            live_migratability(&input(&defaults)),
            Migratability::NotMigratable { ref reason, reported: false, .. } if reason == "InterfaceNotLiveMigratable"
        ));
        assert_eq!(
            live_migratability(&input(&masquerade_by_default())),
            Migratability::Migratable
        );
    }

    /// `pkg/virt-handler/vm.go` `calculateLiveMigrationCondition`: SEV and SNP are
    /// SEVNotLiveMigratable ("VMI uses SEV"), TDX is TDXNotLiveMigratable, launchSecurity on
    /// s390x is Secure Execution, and Hyper-V passthrough is HypervPassthroughNotLiveMigratable.
    #[test]
    fn confidential_computing_reasons_are_kubevirts() {
        for (domain, reason, message) in [
            (
                "launchSecurity: {sev: {}}",
                "SEVNotLiveMigratable",
                "VMI uses SEV",
            ),
            (
                "launchSecurity: {snp: {}}",
                "SEVNotLiveMigratable",
                "VMI uses SEV",
            ),
            (
                "launchSecurity: {tdx: {}}",
                "TDXNotLiveMigratable",
                "VMI uses TDX",
            ),
            (
                "features: {hypervPassthrough: {enabled: true}}",
                "HypervPassthroughNotLiveMigratable",
                "VMI uses hyperv passthrough",
            ),
        ] {
            let v = verdict(&format!("domain: {{{domain}}}"), &[], None, &[]);
            assert_eq!(
                v,
                Migratability::NotMigratable {
                    reason: reason.into(),
                    message: message.into(),
                    reported: false
                },
                "{domain}"
            );
        }
        let s390x = verdict(
            "architecture: s390x\ndomain: {launchSecurity: {}}",
            &[],
            None,
            &[],
        );
        assert!(
            matches!(s390x, Migratability::NotMigratable { ref reason, .. } if reason == "SecureExecutionNotLiveMigratable"),
            "{s390x:?}"
        );
        assert_eq!(
            verdict(
                "domain: {features: {hypervPassthrough: {enabled: false}}}",
                &[],
                None,
                &[]
            ),
            Migratability::Migratable
        );
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
        assert!(matches!(
            verdict(spec, &[], None, &[]),
            Migratability::Unknown { .. }
        ));
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
