//! `ClusterSnapshot`: everything the audit and the planners read, in one value.
//!
//! The same type is filled from the live cluster (`vm-kube`) or from manifest files, so every
//! verdict can be computed, printed and unit-tested without a cluster.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{StorageClass, VolumeAttachment};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::kubevirt::{
    DataVolume, HyperConverged, KubeVirt, MigrationPolicy, NetworkAttachmentDefinition, StorageProfile,
    VirtualMachine, VirtualMachineClusterInstancetype, VirtualMachineInstance,
    VirtualMachineInstanceMigration, VirtualMachineInstanceReplicaSet, VirtualMachineInstancetype,
    VirtualMachinePool,
};

/// Where a snapshot came from; findings word themselves accordingly ("in the cluster" or "in
/// the input").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SnapshotSource {
    /// Listed from a live API server: nodes and pods are the real ones.
    Live,
    /// Read from manifests: only the objects given are known.
    #[default]
    Files,
}

/// Every object the plugins reason about, as lists.
#[derive(Clone, Debug, Default)]
#[allow(missing_docs)] // The fields are the object lists their names say.
pub struct ClusterSnapshot {
    pub source: SnapshotSource,
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub pvcs: Vec<PersistentVolumeClaim>,
    pub pdbs: Vec<PodDisruptionBudget>,
    pub vms: Vec<VirtualMachine>,
    pub vmis: Vec<VirtualMachineInstance>,
    pub replica_sets: Vec<VirtualMachineInstanceReplicaSet>,
    pub pools: Vec<VirtualMachinePool>,
    pub migrations: Vec<VirtualMachineInstanceMigration>,
    pub kubevirts: Vec<KubeVirt>,
    pub hyperconvergeds: Vec<HyperConverged>,
    pub instancetypes: Vec<VirtualMachineInstancetype>,
    pub cluster_instancetypes: Vec<VirtualMachineClusterInstancetype>,
    /// MigrationPolicies (cluster-scoped): per-VMI migration options over the KubeVirt CR's.
    pub migration_policies: Vec<MigrationPolicy>,
    /// The kubelets' node Leases (namespace `kube-node-lease`, one per node, named after it):
    /// their `renewTime` tells whether a NotReady node is still alive.
    pub leases: Vec<Lease>,
    /// CSI VolumeAttachments: an RWO volume attached to a dead node keeps its VM from starting
    /// anywhere else until it is released.
    pub volume_attachments: Vec<VolumeAttachment>,
    /// CDI DataVolumes (namespaced): each becomes a PVC of its name, whose access modes decide
    /// live-migratability before the PVC exists (see [`crate::datavolume`]).
    pub data_volumes: Vec<DataVolume>,
    /// CDI StorageProfiles (cluster-scoped, one per StorageClass, named after it): the access
    /// modes CDI gives a DataVolume whose `spec.storage` names none.
    pub storage_profiles: Vec<StorageProfile>,
    /// StorageClasses: the default one (annotation `storageclass.kubernetes.io/is-default-class`
    /// or `storageclass.kubevirt.io/is-default-virt-class`) is the class of a DataVolume that
    /// names none.
    pub storage_classes: Vec<StorageClass>,
    /// Multus NetworkAttachmentDefinitions (namespaced): the device-plugin resource named by
    /// their `k8s.v1.cni.cncf.io/resourceName` annotation (SR-IOV VFs, say) is requested by
    /// every launcher pod on that network.
    pub network_attachment_definitions: Vec<NetworkAttachmentDefinition>,
    /// Where each object read from a manifest came from (empty for live snapshots).
    pub origins: BTreeMap<ObjectRef, Origin>,
    /// Where every copy of each named object came from, in input order, when the input was
    /// read with [`Duplicates::Layer`](crate::manifest::Duplicates::Layer) (empty otherwise).
    pub copies: BTreeMap<ObjectRef, Vec<Origin>>,
}

/// The file and line an object was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// File name, or `-` for stdin.
    pub source: String,
    /// 1-based line of the document.
    pub line: usize,
}

impl ClusterSnapshot {
    /// Keeps only the VMs, VMIs, replica sets and pools whose metadata passes `keep` (for
    /// `-n` and `-l` in file mode); nodes, pods and configuration stay, as capacity needs them.
    pub fn retain_workloads(&mut self, keep: impl Fn(&ObjectMeta) -> bool) {
        self.vms.retain(|o| keep(&o.metadata));
        self.vmis.retain(|o| keep(&o.metadata));
        self.replica_sets.retain(|o| keep(&o.metadata));
        self.pools.retain(|o| keep(&o.metadata));
    }

    /// The words for where objects were looked up, for messages.
    #[must_use]
    pub fn where_looked(&self) -> &'static str {
        match self.source {
            SnapshotSource::Live => "in the cluster",
            SnapshotSource::Files => "in the input",
        }
    }
}

/// An object of the snapshot by kind, namespace and name (and, for one copy of several, where
/// that copy was read): what origins are recorded under and what a finding is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    /// Kubernetes kind, e.g. `VirtualMachine`.
    pub kind: String,
    /// Namespace; absent for cluster-scoped objects such as nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
    /// `file:line` of this copy, for an object the input holds more than once and that is
    /// audited once per copy (`vm-audit --audit-duplicates`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl ObjectRef {
    /// `kind ns/name` (or `kind name`), then ` (file:line)` for one copy of several.
    #[must_use]
    pub fn words(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}{}", self.kind, self.name, self.copy_suffix()),
            None => format!("{} {}{}", self.kind, self.name, self.copy_suffix()),
        }
    }

    /// ` (file:line)` for one copy of several (`--audit-duplicates`), else nothing.
    #[must_use]
    pub fn copy_suffix(&self) -> String {
        self.source
            .as_ref()
            .map(|source| format!(" ({source})"))
            .unwrap_or_default()
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}/{}{}", self.kind, self.name, self.copy_suffix()),
            None => write!(f, "{}/{}{}", self.kind, self.name, self.copy_suffix()),
        }
    }
}
