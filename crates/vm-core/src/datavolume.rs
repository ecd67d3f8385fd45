//! The PVC behind a VMI volume, including the one CDI has yet to create from a DataVolume.
//!
//! KubeVirt decides live-migratability from the access modes of every PVC a VMI uses
//! (`DisksNotLiveMigratable` unless all are ReadWriteMany, reference §4). A `dataVolume: {name:
//! X}` volume uses PVC X: CDI names the PVC after its DataVolume, in the same namespace (CDI
//! `doc/storageprofile.md`: DataVolume `blank-dv` gives PVC `blank-dv`). A VM's
//! `spec.dataVolumeTemplates` become DataVolumes of the same names. So before the PVC exists (a
//! VM read from files, a VM not yet started), its access modes can still be known from the
//! DataVolume, exactly as CDI will render them (CDI `pkg/controller/datavolume/util.go`,
//! `renderPvcSpec`):
//!
//! - `spec.pvc` is copied into the PVC as it is;
//! - `spec.storage` is copied, then what it leaves out is taken from the StorageProfile named
//!   after the storage class: `storageClassName`, else the default class. With neither access
//!   modes nor volume mode, the first claim property set; with a volume mode only, the first set
//!   of that volume mode; with access modes only, nothing about access changes.
//!
//! A class the DataVolume names is looked up through its StorageProfile alone: CDI needs the
//! StorageClass too, but an input rarely carries it, and a missing class stops CDI (the VM does
//! not start) rather than deciding an access mode.
//!
//! CDI reads a StorageProfile's `status.claimPropertySets`, which its controller copies from
//! `spec.claimPropertySets` when those are set and otherwise fills with its known defaults for
//! the provisioner (CDI `pkg/controller/storageprofile-controller.go`); so here a non-empty spec
//! wins over the status, which also covers a profile written by hand with only a spec.
//!
//! Lookup order for claim X in namespace N: a PVC X in N wins (it is the real one, whatever
//! its DataVolume said, and CDI may have garbage-collected the DataVolume); else the DataVolume
//! template X of the VM itself (what the VM controller will create); else a DataVolume object X
//! in N. Nothing here depends on whether the snapshot came from files or a live cluster, so the
//! verdicts and their words are the same either way.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;

use crate::kubevirt::{
    ClaimPropertySet, DataVolume, DataVolumeSpec, DataVolumeTemplateSpec, StorageProfile,
    VirtualMachineInstance,
};
use crate::snapshot::ClusterSnapshot;

/// Annotation that makes a StorageClass the cluster's default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// Annotation that makes a StorageClass the default for virtualization; CDI prefers it over
/// [`DEFAULT_CLASS_ANNOTATION`] for DataVolumes of content type `kubevirt` (the default).
pub const DEFAULT_VIRT_CLASS_ANNOTATION: &str = "storageclass.kubevirt.io/is-default-virt-class";

/// The storage objects a claim is resolved against, borrowed from a snapshot.
#[derive(Clone, Copy, Debug, Default)]
pub struct StorageObjects<'a> {
    /// PersistentVolumeClaims.
    pub pvcs: &'a [PersistentVolumeClaim],
    /// DataVolume objects.
    pub data_volumes: &'a [DataVolume],
    /// StorageProfiles.
    pub storage_profiles: &'a [StorageProfile],
    /// StorageClasses.
    pub storage_classes: &'a [StorageClass],
}

impl<'a> StorageObjects<'a> {
    /// The storage objects of `snapshot`.
    #[must_use]
    pub fn of(snapshot: &'a ClusterSnapshot) -> Self {
        Self {
            pvcs: &snapshot.pvcs,
            data_volumes: &snapshot.data_volumes,
            storage_profiles: &snapshot.storage_profiles,
            storage_classes: &snapshot.storage_classes,
        }
    }
}

/// The claim a VMI volume names, as far as the snapshot tells.
#[derive(Clone, Debug, PartialEq)]
pub enum VolumeClaim<'a> {
    /// The PVC exists.
    Pvc(&'a PersistentVolumeClaim),
    /// No PVC yet: CDI creates it from this DataVolume.
    DataVolume(DataVolumeClaim),
    /// Neither a PVC nor a DataVolume of that name is known.
    NotFound,
}

/// Where a DataVolume was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataVolumeOrigin {
    /// An entry of the VM's own `spec.dataVolumeTemplates`.
    Template,
    /// A DataVolume object.
    Object,
}

/// The PVC that CDI creates from a DataVolume: its name is the DataVolume's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataVolumeClaim {
    /// The DataVolume's name, which is the PVC's.
    pub name: String,
    /// Where the DataVolume was found.
    pub origin: DataVolumeOrigin,
    /// The modes CDI gives the PVC, or why they cannot be known.
    pub modes: ClaimModes,
}

/// Where a DataVolume's access modes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModesFrom {
    /// `spec.pvc.accessModes`.
    PvcSpec,
    /// `spec.storage.accessModes`.
    StorageSpec,
    /// The StorageProfile of `class`; `default_class` when the DataVolume names no class.
    StorageProfile {
        /// The StorageClass (and StorageProfile) name.
        class: String,
        /// Whether the class is the default one, not named by the DataVolume.
        default_class: bool,
    },
}

/// The access and volume modes of the PVC that CDI creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimModes {
    /// Known.
    Known {
        /// The access modes (ReadWriteOnce, ReadWriteMany, ...).
        access_modes: Vec<String>,
        /// The volume mode, when known (`None`: Kubernetes' default, Filesystem, or not decided
        /// here). KubeVirt's `LiveMigratable` does not depend on it.
        volume_mode: Option<String>,
        /// Where the access modes come from.
        from: ModesFrom,
    },
    /// Cannot be known from the snapshot.
    Unknown {
        /// Why, in a sentence.
        why: String,
        /// What to add so that it can be known.
        add: String,
    },
}

/// Finds the claim named `name` in `namespace` for a volume of a VMI whose VM has
/// `templates` (empty for a VMI without a VM): an existing PVC, else the DataVolume template,
/// else a DataVolume object (see the module documentation for why in this order).
#[must_use]
pub fn resolve_claim<'a>(
    storage: StorageObjects<'a>,
    namespace: &str,
    templates: &[DataVolumeTemplateSpec],
    name: &str,
) -> VolumeClaim<'a> {
    let in_namespace = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.name.as_deref() == Some(name) && meta.namespace.as_deref().unwrap_or("default") == namespace
    };
    if let Some(pvc) = storage.pvcs.iter().find(|p| in_namespace(&p.metadata)) {
        return VolumeClaim::Pvc(pvc);
    }
    let template = templates
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some(name))
        .map(|t| (&t.spec, DataVolumeOrigin::Template));
    let object = || {
        storage
            .data_volumes
            .iter()
            .find(|d| in_namespace(&d.metadata))
            .map(|d| (&d.spec, DataVolumeOrigin::Object))
    };
    match template.or_else(object) {
        Some((spec, origin)) => VolumeClaim::DataVolume(DataVolumeClaim {
            name: name.to_string(),
            origin,
            modes: data_volume_modes(storage, name, origin, spec),
        }),
        None => VolumeClaim::NotFound,
    }
}

/// The access and volume modes CDI gives the PVC of DataVolume `name` with `spec` (CDI
/// `renderPvcSpec` and `renderPvcSpecVolumeModeAndAccessModesAndStorageClass`).
#[must_use]
pub fn data_volume_modes(
    storage: StorageObjects<'_>,
    name: &str,
    origin: DataVolumeOrigin,
    spec: &DataVolumeSpec,
) -> ClaimModes {
    let field = |path: &str| match origin {
        DataVolumeOrigin::Template => {
            format!("spec.{path} to the VM's dataVolumeTemplates entry {name}")
        }
        DataVolumeOrigin::Object => format!("spec.{path} to DataVolume {name}"),
    };
    if let Some(pvc) = &spec.pvc {
        // Copied as it is: no StorageProfile fills anything in.
        return match pvc.access_modes.as_ref().filter(|m| !m.is_empty()) {
            Some(modes) => ClaimModes::Known {
                access_modes: modes.clone(),
                volume_mode: pvc.volume_mode.clone(),
                from: ModesFrom::PvcSpec,
            },
            None => ClaimModes::Unknown {
                why: format!(
                    "DataVolume {name} has spec.pvc without accessModes; CDI copies spec.pvc into PVC {name} as it is, and a PVC needs an access mode"
                ),
                add: format!("add {}", field("pvc.accessModes")),
            },
        };
    }
    let Some(wanted) = &spec.storage else {
        return ClaimModes::Unknown {
            why: format!(
                "DataVolume {name} has neither spec.pvc nor spec.storage, so CDI creates no PVC {name}"
            ),
            add: format!("add {}", field("storage")),
        };
    };
    let volume_mode = wanted
        .volume_mode
        .clone()
        .filter(|m| !m.is_empty() && m != "FromStorageProfile");
    if let Some(modes) = wanted.access_modes.as_ref().filter(|m| !m.is_empty()) {
        return ClaimModes::Known {
            access_modes: modes.clone(),
            volume_mode,
            from: ModesFrom::StorageSpec,
        };
    }
    // The access modes are left to CDI: the StorageProfile of the class decides.
    let add_modes = field("storage.accessModes");
    let (class, default_class) = match &wanted.storage_class_name {
        Some(class) => (class.clone(), false),
        None => match default_storage_class(storage.storage_classes, spec.content_type.as_deref()) {
            Some(class) => (class.metadata.name.clone().unwrap_or_default(), true),
            None => {
                return ClaimModes::Unknown {
                    why: format!(
                        "DataVolume {name} leaves its access mode and storage class to CDI, and no default StorageClass (annotation {DEFAULT_CLASS_ANNOTATION}: \"true\") is known"
                    ),
                    add: format!("add the default StorageClass and its StorageProfile, or {add_modes}"),
                };
            }
        },
    };
    let which = if default_class {
        format!("StorageProfile {class} (of the default StorageClass)")
    } else {
        format!("StorageProfile {class}")
    };
    let Some(profile) = storage
        .storage_profiles
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(class.as_str()))
    else {
        return ClaimModes::Unknown {
            why: format!(
                "DataVolume {name} leaves its access mode to CDI, which takes it from {which}, and StorageProfile {class} is not known"
            ),
            add: format!(
                "add StorageProfile {class} (cdi.kubevirt.io/v1beta1, with its claimPropertySets), or {add_modes}"
            ),
        };
    };
    let sets = claim_property_sets(profile);
    let chosen = match &volume_mode {
        // CDI looks at the first set only.
        None => sets.first().filter(|s| !s.access_modes.is_empty()),
        Some(mode) => sets
            .iter()
            .find(|s| s.volume_mode.as_deref() == Some(mode.as_str()) && !s.access_modes.is_empty()),
    };
    match chosen {
        Some(set) => ClaimModes::Known {
            access_modes: set.access_modes.clone(),
            volume_mode: volume_mode.or_else(|| set.volume_mode.clone()),
            from: ModesFrom::StorageProfile { class, default_class },
        },
        None => {
            let lacking = match &volume_mode {
                None => "no claimPropertySets with access modes".to_string(),
                Some(mode) => format!("no claimPropertySet with access modes for volumeMode {mode}"),
            };
            ClaimModes::Unknown {
                why: format!(
                    "DataVolume {name} leaves its access mode to CDI, and {which} has {lacking}, so CDI cannot create PVC {name}"
                ),
                add: format!("set spec.claimPropertySets on StorageProfile {class}, or add {add_modes}"),
            }
        }
    }
}

/// The claim property sets CDI uses from `profile`: the spec's when it sets any (CDI's
/// controller copies them into the status), else the status's.
#[must_use]
pub fn claim_property_sets(profile: &StorageProfile) -> &[ClaimPropertySet] {
    if profile.spec.claim_property_sets.is_empty() {
        profile
            .status
            .as_ref()
            .map_or(&[][..], |s| s.claim_property_sets.as_slice())
    } else {
        &profile.spec.claim_property_sets
    }
}

/// The StorageClass CDI gives a DataVolume that names none (CDI `getFallbackStorageClass`):
/// the default virt class unless the content type is `archive`, else the default class. Among
/// several defaults, the newest wins, then the first by name, as Kubernetes does.
#[must_use]
pub fn default_storage_class<'a>(
    classes: &'a [StorageClass],
    content_type: Option<&str>,
) -> Option<&'a StorageClass> {
    let marked = |annotation: &str| {
        classes
            .iter()
            .filter(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(annotation))
                    .is_some_and(|v| v == "true")
            })
            .min_by(|a, b| {
                let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
                created(b)
                    .cmp(&created(a))
                    .then_with(|| a.metadata.name.cmp(&b.metadata.name))
            })
    };
    let virt = if content_type == Some("archive") {
        None
    } else {
        marked(DEFAULT_VIRT_CLASS_ANNOTATION)
    };
    virt.or_else(|| marked(DEFAULT_CLASS_ANNOTATION))
}

/// The `spec.dataVolumeTemplates` of the VM that runs `vmi`: the VM its controller owner
/// reference names, else the VM of the same name and namespace (KubeVirt names a VM's VMI
/// after it). Empty when there is no such VM in the snapshot.
#[must_use]
pub fn vm_templates_of<'a>(
    snapshot: &'a ClusterSnapshot,
    vmi: &VirtualMachineInstance,
) -> &'a [DataVolumeTemplateSpec] {
    let namespace = vmi.metadata.namespace.as_deref().unwrap_or("default");
    let owner = vmi
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "VirtualMachine")
        .map(|o| o.name.as_str());
    let name = owner.or(vmi.metadata.name.as_deref());
    snapshot
        .vms
        .iter()
        .find(|vm| {
            vm.metadata.name.as_deref() == name
                && vm.metadata.namespace.as_deref().unwrap_or("default") == namespace
        })
        .map_or(&[], |vm| vm.spec.data_volume_templates.as_slice())
}

#[cfg(test)]
mod tests;
