//! What every rule needs besides the subject: the snapshot, the resolved cluster configuration,
//! the nodes as the placement engine sees them, and lookups computed the same way for all rules.

use super::subject::Subject;
use crate::datavolume::StorageObjects;
use crate::effective::{
    ClusterConfig, EffectiveEviction, MigrationSettings, eviction_strategy, migration_settings,
};
use crate::kubevirt::common_instancetypes::{RELEASE, common_cluster_instancetype};
use crate::kubevirt::{InstancetypeMatcher, InstancetypeSpec};
use crate::migratability::{Migratability, MigratabilityInput, live_migratability};
use crate::placement::NodeView;
use crate::resources::{NetworkResources, Requests, launcher_requests, network_resources};
use crate::snapshot::{ClusterSnapshot, SnapshotSource};

/// What the operator asks of an audit beyond the objects: limits that have no KubeVirt default
/// and so are off unless set (`vm-audit` fills them from its flags).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditOptions {
    /// The longest a single live migration may take, in seconds (`--max-migration-time`).
    /// When set, the rule `migration-timeout-exceeds-limit` flags VMs whose KubeVirt completion
    /// timeout (guest size × `completionTimeoutPerGiB`) is longer. `None`: the rule is off.
    pub max_migration_seconds: Option<u64>,
}

/// Shared, read-only inputs of the rules.
pub struct AuditContext<'a> {
    /// Everything known.
    pub snapshot: &'a ClusterSnapshot,
    /// The operator's limits.
    pub options: AuditOptions,
    /// The KubeVirt/HCO configuration in force.
    pub cluster: ClusterConfig,
    /// Every node, with the requests of the pods bound to it.
    pub nodes: Vec<NodeView>,
    /// The launcher pods by the VMI that created them.
    pub launchers: crate::migration_target::TargetSources<'a>,
}

/// The outcome of looking up a VM's instancetype.
pub enum InstancetypeLookup<'a> {
    /// The VM uses none.
    NotUsed,
    /// Found; its spec sizes the guest.
    Found(&'a InstancetypeSpec),
    /// Not among the input files but one of KubeVirt's common cluster instancetypes, whose
    /// built-in sizes stand in for it: the spec and the name.
    Common(&'a InstancetypeSpec, String),
    /// Referenced but not in the snapshot: `(kind, name)`.
    Missing(&'static str, String),
}

impl<'a> AuditContext<'a> {
    /// Resolves the cluster configuration and node views of `snapshot` once. Nodes are sorted
    /// by name, so that messages naming several do not depend on the order they were listed in.
    #[must_use]
    pub fn new(snapshot: &'a ClusterSnapshot) -> Self {
        Self::with_options(snapshot, &AuditOptions::default())
    }

    /// As [`AuditContext::new`], with the operator's `options`.
    #[must_use]
    pub fn with_options(snapshot: &'a ClusterSnapshot, options: &AuditOptions) -> Self {
        let mut nodes: Vec<NodeView> = NodeView::all(&snapshot.nodes, &snapshot.pods);
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            snapshot,
            options: options.clone(),
            cluster: ClusterConfig::from_crs(&snapshot.kubevirts, &snapshot.hyperconvergeds),
            nodes,
            launchers: crate::migration_target::TargetSources::of(snapshot),
        }
    }

    /// Finds the instancetype a VM refers to. An empty kind means the cluster-scoped kind. In
    /// file mode a cluster instancetype that the input does not define may be one of KubeVirt's
    /// common instancetypes, which virt-operator deploys on most clusters; a definition in the
    /// input wins. Live mode looks only at the cluster: a VM whose instancetype is not there
    /// cannot start, whatever its name.
    #[must_use]
    pub fn instancetype(
        &self,
        namespace: &str,
        matcher: Option<&InstancetypeMatcher>,
    ) -> InstancetypeLookup<'a> {
        let Some(m) = matcher else {
            return InstancetypeLookup::NotUsed;
        };
        let namespaced = m.kind.as_deref() == Some("VirtualMachineInstancetype");
        let found = if namespaced {
            self.snapshot
                .instancetypes
                .iter()
                .find(|t| {
                    t.metadata.name.as_deref() == Some(m.name.as_str())
                        && t.metadata.namespace.as_deref().unwrap_or("default") == namespace
                })
                .map(|t| &t.spec)
        } else {
            self.snapshot
                .cluster_instancetypes
                .iter()
                .find(|t| t.metadata.name.as_deref() == Some(m.name.as_str()))
                .map(|t| &t.spec)
        };
        match found {
            Some(spec) => InstancetypeLookup::Found(spec),
            None if namespaced => InstancetypeLookup::Missing("VirtualMachineInstancetype", m.name.clone()),
            None => match self.common_instancetype(&m.name) {
                Some(spec) => InstancetypeLookup::Common(spec, m.name.clone()),
                None => InstancetypeLookup::Missing("VirtualMachineClusterInstancetype", m.name.clone()),
            },
        }
    }

    /// The instancetype spec of a subject, when it uses one that exists.
    #[must_use]
    pub fn instancetype_of(&self, subject: &Subject<'_>) -> Option<&'a InstancetypeSpec> {
        match self.instancetype(
            subject.namespace(),
            subject.vm_spec.and_then(|s| s.instancetype.as_ref()),
        ) {
            InstancetypeLookup::Found(spec) | InstancetypeLookup::Common(spec, _) => Some(spec),
            InstancetypeLookup::NotUsed | InstancetypeLookup::Missing(..) => None,
        }
    }

    /// The built-in common instancetype `name`, in file mode only.
    fn common_instancetype(&self, name: &str) -> Option<&'static InstancetypeSpec> {
        match self.snapshot.source {
            SnapshotSource::Files => common_cluster_instancetype(name),
            SnapshotSource::Live => None,
        }
    }

    /// Words for a finding whose numbers come from a built-in common instancetype, so that the
    /// user knows they were assumed, not read; `None` when the subject is not sized by one.
    #[must_use]
    pub fn built_in_sizing(&self, subject: &Subject<'_>) -> Option<String> {
        match self.instancetype(
            subject.namespace(),
            subject.vm_spec.and_then(|s| s.instancetype.as_ref()),
        ) {
            InstancetypeLookup::Common(_, name) => Some(format!(
                "{name} sized as in KubeVirt's common-instancetypes {RELEASE}, not in the input"
            )),
            _ => None,
        }
    }

    /// The eviction strategy KubeVirt applies to the subject now.
    #[must_use]
    pub fn eviction(&self, subject: &Subject<'_>) -> EffectiveEviction {
        let vmi_value = subject.vmi.and_then(|v| v.spec.eviction_strategy.as_deref());
        let template_value = subject
            .template
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.eviction_strategy.as_deref());
        eviction_strategy(vmi_value, template_value, &self.cluster)
    }

    /// Whether the subject's VMI can be live-migrated. A VM's (or pool's) dataVolumeTemplates
    /// count as the PVCs CDI will create from them.
    #[must_use]
    pub fn migratability(&self, subject: &Subject<'_>) -> Migratability {
        live_migratability(&MigratabilityInput {
            annotations: subject.vmi_annotations(),
            spec: subject.running_spec(),
            status: subject.vmi.and_then(|v| v.status.as_ref()),
            namespace: subject.namespace(),
            storage: StorageObjects::of(self.snapshot),
            data_volume_templates: subject
                .vm_spec
                .map_or(&[], |s| s.data_volume_templates.as_slice()),
            cluster: &self.cluster,
        })
    }

    /// The migration options KubeVirt would give a migration of the subject's VMI (see
    /// [`migration_settings`]). The snapshot holds no Namespace objects, so a policy's
    /// non-empty `namespaceSelector` is taken not to match (and listed in
    /// `unchecked_policies`).
    #[must_use]
    pub fn migration_settings(&self, subject: &Subject<'_>) -> MigrationSettings {
        migration_settings(
            &self.cluster,
            &self.snapshot.migration_policies,
            subject.vmi_labels(),
            None,
        )
    }

    /// What the subject's launcher pod requests, when its memory is sized at all, the
    /// resources of its Multus networks' NADs included (see [`Self::network_resources`]).
    #[must_use]
    pub fn requests(&self, subject: &Subject<'_>) -> Option<Requests> {
        let mut requests = launcher_requests(
            subject.running_spec(),
            self.instancetype_of(subject),
            &self.cluster,
        )?;
        requests += &self.network_resources(subject).requests;
        Some(requests)
    }

    /// The device-plugin resources the subject's Multus networks add, and the NADs that are
    /// not known.
    #[must_use]
    pub fn network_resources(&self, subject: &Subject<'_>) -> NetworkResources {
        network_resources(
            subject.running_spec(),
            subject.namespace(),
            &self.snapshot.network_attachment_definitions,
        )
    }
}
