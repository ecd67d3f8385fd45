//! The top-level KubeVirt objects: VMs, VMIs, their replica sets and pools, migrations, the
//! cluster configuration CRs and instancetypes.
#![allow(missing_docs)] // Field-for-field mirror of the KubeVirt API; its docs apply.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cdi::DataVolumeTemplateSpec;
use super::instance::{
    VirtualMachineInstanceSpec, VirtualMachineInstanceStatus, VirtualMachineInstanceTemplateSpec,
};
use super::resource_macro::kubevirt_resource;

/// `kubevirt.io/v1` VirtualMachine.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachine {
    pub metadata: ObjectMeta,
    pub spec: VirtualMachineSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<VirtualMachineStatus>,
}
kubevirt_resource!(
    VirtualMachine,
    "kubevirt.io",
    "v1",
    "VirtualMachine",
    "virtualmachines",
    NamespaceResourceScope
);

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachineSpec {
    /// Deprecated: `true` maps to `Always`, `false` to `Halted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_strategy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instancetype: Option<InstancetypeMatcher>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preference: Option<InstancetypeMatcher>,
    pub template: VirtualMachineInstanceTemplateSpec,
    /// DataVolumes the VM controller creates (by these names) before it starts the VMI.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data_volume_templates: Vec<DataVolumeTemplateSpec>,
}

/// `spec.instancetype` / `spec.preference`: an empty kind means the cluster-scoped kind.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct InstancetypeMatcher {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachineStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub printable_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_strategy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub state_change_requests: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_failure: Option<Value>,
}

/// `kubevirt.io/v1` VirtualMachineInstance. Its CRD has no status subresource.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachineInstance {
    pub metadata: ObjectMeta,
    pub spec: VirtualMachineInstanceSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<VirtualMachineInstanceStatus>,
}
kubevirt_resource!(
    VirtualMachineInstance,
    "kubevirt.io",
    "v1",
    "VirtualMachineInstance",
    "virtualmachineinstances",
    NamespaceResourceScope
);

/// `kubevirt.io/v1` VirtualMachineInstanceReplicaSet.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachineInstanceReplicaSet {
    pub metadata: ObjectMeta,
    pub spec: VirtualMachineInstanceReplicaSetSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}
kubevirt_resource!(
    VirtualMachineInstanceReplicaSet,
    "kubevirt.io",
    "v1",
    "VirtualMachineInstanceReplicaSet",
    "virtualmachineinstancereplicasets",
    NamespaceResourceScope
);

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachineInstanceReplicaSetSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    pub template: VirtualMachineInstanceTemplateSpec,
}

/// `pool.kubevirt.io/v1alpha1` VirtualMachinePool.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachinePool {
    pub metadata: ObjectMeta,
    pub spec: VirtualMachinePoolSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}
kubevirt_resource!(
    VirtualMachinePool,
    "pool.kubevirt.io",
    "v1alpha1",
    "VirtualMachinePool",
    "virtualmachinepools",
    NamespaceResourceScope
);

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachinePoolSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    pub virtual_machine_template: VirtualMachineTemplateSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachineTemplateSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ObjectMeta>,
    pub spec: VirtualMachineSpec,
}

/// `kubevirt.io/v1` VirtualMachineInstanceMigration. The plugins create these, so the type
/// carries `apiVersion` and `kind` (the API server rejects a body without them);
/// [`VirtualMachineInstanceMigration::new`] fills them in.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachineInstanceMigration {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: VirtualMachineInstanceMigrationSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<VirtualMachineInstanceMigrationStatus>,
}
kubevirt_resource!(
    VirtualMachineInstanceMigration,
    "kubevirt.io",
    "v1",
    "VirtualMachineInstanceMigration",
    "virtualmachineinstancemigrations",
    NamespaceResourceScope
);

impl VirtualMachineInstanceMigration {
    /// A migration of `spec.vmiName` with `metadata`, ready to create.
    #[must_use]
    pub fn new(metadata: ObjectMeta, vmi_name: &str) -> Self {
        Self {
            api_version: "kubevirt.io/v1".into(),
            kind: "VirtualMachineInstanceMigration".into(),
            metadata,
            spec: VirtualMachineInstanceMigrationSpec {
                vmi_name: vmi_name.to_string(),
                added_node_selector: None,
            },
            status: None,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachineInstanceMigrationSpec {
    pub vmi_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_node_selector: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachineInstanceMigrationStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration_state: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phase_transition_timestamps: Vec<Value>,
}

/// `kubevirt.io/v1` KubeVirt: the cluster-wide configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeVirt {
    pub metadata: ObjectMeta,
    pub spec: KubeVirtSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}
kubevirt_resource!(
    KubeVirt,
    "kubevirt.io",
    "v1",
    "KubeVirt",
    "kubevirts",
    NamespaceResourceScope
);

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeVirtSpec {
    pub configuration: KubeVirtConfiguration,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeVirtConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eviction_strategy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrations: Option<MigrationConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub developer_configuration: Option<DeveloperConfiguration>,
    /// The cluster's default CPU model (empty: `host-model`).
    #[serde(rename = "cpuModel", skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// `network`: the binding of the pod network a VMI without interfaces gets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkConfiguration>,
    /// `virtualMachineOptions`: `disableSerialConsoleLog` turns the console-log container off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_machine_options: Option<VirtualMachineOptions>,
    /// Requests and limits of KubeVirt's support containers, by container type.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub support_container_resources: Vec<SupportContainerResources>,
}

/// `spec.configuration.network` (`types.go` `NetworkConfiguration`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkConfiguration {
    /// `bridge` (KubeVirt's default when unset) or `masquerade`.
    #[serde(rename = "defaultNetworkInterface", skip_serializing_if = "Option::is_none")]
    pub default_network_interface: Option<String>,
    /// Network binding plugins by name; one with `migration` set can be live-migrated.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub binding: BTreeMap<String, Value>,
}

/// `spec.configuration.virtualMachineOptions`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachineOptions {
    /// An empty object when set: its presence disables the console log
    /// (`virt-config.go` `IsSerialConsoleLogDisabled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_serial_console_log: Option<Value>,
}

/// One entry of `spec.configuration.supportContainerResources`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SupportContainerResources {
    /// `guest-console-log`, `hotplug-attachment`, `container-disk`, `virtiofs`, `sidecar`.
    #[serde(rename = "type")]
    pub type_: String,
    pub resources: SupportResourceRequirements,
}

/// Requests and limits of a support container.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SupportResourceRequirements {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
}

/// `k8s.cni.cncf.io/v1` NetworkAttachmentDefinition (Multus): only its annotations are read,
/// for `k8s.v1.cni.cncf.io/resourceName`, the device-plugin resource a launcher pod on that
/// network requests (`pkg/network/multus/nad.go`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkAttachmentDefinition {
    pub metadata: ObjectMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<Value>,
}
kubevirt_resource!(
    NetworkAttachmentDefinition,
    "k8s.cni.cncf.io",
    "v1",
    "NetworkAttachmentDefinition",
    "network-attachment-definitions",
    NamespaceResourceScope
);

/// The migration limits (`spec.configuration.migrations`, or HCO's `liveMigrationConfig`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct MigrationConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_migrations_per_cluster: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_outbound_migrations_per_node: Option<u32>,
    /// Seconds a migration may take per GiB of guest memory before KubeVirt cancels it.
    #[serde(rename = "completionTimeoutPerGiB", skip_serializing_if = "Option::is_none")]
    pub completion_timeout_per_gib: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_per_migration: Option<Quantity>,
    /// Lets libvirt throttle the guest's vCPUs until its memory copy converges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_auto_converge: Option<bool>,
    /// Lets a migration that runs out of time switch to post-copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_post_copy: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DeveloperConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_allocation_ratio: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_overcommit: Option<u32>,
    /// Node selectors KubeVirt adds to every launcher pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_selectors: Option<BTreeMap<String, String>>,
}

/// `migrations.kubevirt.io/v1alpha1` MigrationPolicy (cluster-scoped): migration options for
/// the VMIs it selects, over the KubeVirt CR's. See [`crate::effective::migration_settings`]
/// for which policy applies to a VMI.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct MigrationPolicy {
    pub metadata: ObjectMeta,
    pub spec: MigrationPolicySpec,
}
kubevirt_resource!(
    MigrationPolicy,
    "migrations.kubevirt.io",
    "v1alpha1",
    "MigrationPolicy",
    "migrationpolicies",
    ClusterResourceScope
);

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct MigrationPolicySpec {
    /// A policy without selectors matches no VMI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selectors: Option<MigrationPolicySelectors>,
    #[serde(rename = "completionTimeoutPerGiB", skip_serializing_if = "Option::is_none")]
    pub completion_timeout_per_gib: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_auto_converge: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_post_copy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_per_migration: Option<Quantity>,
}

/// Plain label maps (not `LabelSelector`s): every pair must be on the VMI or its namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct MigrationPolicySelectors {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_selector: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub virtual_machine_instance_selector: BTreeMap<String, String>,
}

/// `hco.kubevirt.io/v1beta1` HyperConverged: HCO copies its settings into the KubeVirt CR.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct HyperConverged {
    pub metadata: ObjectMeta,
    pub spec: HyperConvergedSpec,
}
kubevirt_resource!(
    HyperConverged,
    "hco.kubevirt.io",
    "v1beta1",
    "HyperConverged",
    "hyperconvergeds",
    NamespaceResourceScope
);

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct HyperConvergedSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eviction_strategy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_migration_config: Option<MigrationConfiguration>,
}

/// `instancetype.kubevirt.io/v1beta1` VirtualMachineInstancetype (namespaced).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachineInstancetype {
    pub metadata: ObjectMeta,
    pub spec: InstancetypeSpec,
}
kubevirt_resource!(
    VirtualMachineInstancetype,
    "instancetype.kubevirt.io",
    "v1beta1",
    "VirtualMachineInstancetype",
    "virtualmachineinstancetypes",
    NamespaceResourceScope
);

/// `instancetype.kubevirt.io/v1beta1` VirtualMachineClusterInstancetype (cluster-scoped).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualMachineClusterInstancetype {
    pub metadata: ObjectMeta,
    pub spec: InstancetypeSpec,
}
kubevirt_resource!(
    VirtualMachineClusterInstancetype,
    "instancetype.kubevirt.io",
    "v1beta1",
    "VirtualMachineClusterInstancetype",
    "virtualmachineclusterinstancetypes",
    ClusterResourceScope
);

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct InstancetypeSpec {
    pub cpu: InstancetypeCpu,
    pub memory: InstancetypeMemory,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct InstancetypeCpu {
    pub guest: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedicated_cpu_placement: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct InstancetypeMemory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overcommit_percent: Option<u32>,
    /// `{pageSize: 1Gi}` when the guest is backed by hugepages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hugepages: Option<Value>,
}
