//! CDI's objects (`cdi.kubevirt.io/v1beta1`): DataVolumes, which CDI turns into PVCs of the same
//! name, and StorageProfiles, from which CDI fills in what a DataVolume's `spec.storage` leaves
//! out. See [`crate::datavolume`] for how they decide a volume's access modes.
#![allow(missing_docs)] // Field-for-field mirror of the CDI API; its docs apply.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::resource_macro::kubevirt_resource;

/// `cdi.kubevirt.io/v1beta1` DataVolume: CDI creates a PVC with the DataVolume's name and
/// namespace and fills it from `spec.source`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVolume {
    pub metadata: ObjectMeta,
    pub spec: DataVolumeSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}
kubevirt_resource!(
    DataVolume,
    "cdi.kubevirt.io",
    "v1beta1",
    "DataVolume",
    "datavolumes",
    NamespaceResourceScope
);

/// What a DataVolume asks for. Exactly one of `pvc` and `storage` is meant to be set: `pvc` is
/// copied into the PVC as it is, `storage` is completed from the StorageProfile first.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVolumeSpec {
    /// Where the data comes from (`http`, `registry`, `pvc`, `blank`, ...); not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// A DataSource to clone from, instead of `source`; not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pvc: Option<DataVolumeClaimSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<DataVolumeClaimSpec>,
    /// `kubevirt` (default) or `archive`; an archive never uses the default virt StorageClass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// The claim part of `spec.pvc` or `spec.storage`: only the fields that decide what CDI
/// creates. Every field is optional (in `spec.pvc` a PVC without access modes is then refused
/// by the API server).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVolumeClaimSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_modes: Option<Vec<String>>,
    /// `Filesystem` or `Block`; in `spec.storage`, `FromStorageProfile` means unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Requests and limits (`storage`); not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
}

/// An entry of a VM's `spec.dataVolumeTemplates`: the VM controller creates a DataVolume with
/// this name and spec in the VM's namespace (before the VMI), and CDI its PVC.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVolumeTemplateSpec {
    pub metadata: ObjectMeta,
    pub spec: DataVolumeSpec,
}

/// `cdi.kubevirt.io/v1beta1` StorageProfile (cluster-scoped): CDI makes one per StorageClass,
/// with the class's name, holding the access and volume modes it recommends for that storage.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct StorageProfile {
    pub metadata: ObjectMeta,
    pub spec: StorageProfileSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StorageProfileStatus>,
}
kubevirt_resource!(
    StorageProfile,
    "cdi.kubevirt.io",
    "v1beta1",
    "StorageProfile",
    "storageprofiles",
    ClusterResourceScope
);

/// What an administrator sets; non-empty `claimPropertySets` replace CDI's own in the status.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct StorageProfileSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub claim_property_sets: Vec<ClaimPropertySet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clone_strategy: Option<String>,
}

/// What CDI uses: its known defaults for the provisioner, or the spec's sets.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct StorageProfileStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioner: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub claim_property_sets: Vec<ClaimPropertySet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clone_strategy: Option<String>,
}

/// Access modes and a volume mode that go together, in order of preference.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ClaimPropertySet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
}
