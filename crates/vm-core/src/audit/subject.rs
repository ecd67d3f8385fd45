//! The objects the audit looks at, each with the VMI spec that KubeVirt runs for it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::finding::ObjectRef;
use crate::effective::EvictionSource;
use crate::kubevirt::{
    VirtualMachineInstance, VirtualMachineInstanceSpec, VirtualMachineInstanceTemplateSpec,
    VirtualMachineSpec,
};
use crate::snapshot::ClusterSnapshot;

static EMPTY: BTreeMap<String, String> = BTreeMap::new();
static EMPTY_SPEC: std::sync::LazyLock<VirtualMachineInstanceSpec> =
    std::sync::LazyLock::new(VirtualMachineInstanceSpec::default);

/// An audited object: a VM, a VM pool, a VMI ReplicaSet, or a VMI that nothing owns.
pub struct Subject<'a> {
    /// Kind, namespace and name.
    pub object: ObjectRef,
    /// The object's own annotations (suppressions are read here).
    pub annotations: &'a BTreeMap<String, String>,
    /// The VM spec, for VMs and VM pools.
    pub vm_spec: Option<&'a VirtualMachineSpec>,
    /// The VMI template, for VMs, pools and replica sets.
    pub template: Option<&'a VirtualMachineInstanceTemplateSpec>,
    /// The VMI that runs now: the VM's VMI, or the standalone VMI itself.
    pub vmi: Option<&'a VirtualMachineInstance>,
}

impl<'a> Subject<'a> {
    /// The namespace, `default` when the manifest leaves it out.
    #[must_use]
    pub fn namespace(&self) -> &str {
        self.object.namespace.as_deref().unwrap_or("default")
    }

    /// The template's VMI spec (what the next VMI will get), else the VMI's.
    #[must_use]
    pub fn template_spec(&self) -> &'a VirtualMachineInstanceSpec {
        self.template
            .and_then(|t| t.spec.as_ref())
            .or_else(|| self.vmi.map(|v| &v.spec))
            .unwrap_or(&EMPTY_SPEC)
    }

    /// The spec KubeVirt runs now: the live VMI's when there is one, else the template's.
    #[must_use]
    pub fn running_spec(&self) -> &'a VirtualMachineInstanceSpec {
        self.vmi.map_or_else(|| self.template_spec(), |v| &v.spec)
    }

    /// The annotations that reach the VMI: the live VMI's, else the template's.
    #[must_use]
    pub fn vmi_annotations(&self) -> &'a BTreeMap<String, String> {
        self.vmi
            .and_then(|v| v.metadata.annotations.as_ref())
            .or_else(|| {
                self.template
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.annotations.as_ref())
            })
            .unwrap_or(&EMPTY)
    }

    /// The labels of the VMI: the live VMI's, else the template's (what the next VMI gets).
    #[must_use]
    pub fn vmi_labels(&self) -> &'a BTreeMap<String, String> {
        self.vmi
            .and_then(|v| v.metadata.labels.as_ref())
            .or_else(|| {
                self.template
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.labels.as_ref())
            })
            .unwrap_or(&EMPTY)
    }

    /// The path of `field` of the VMI spec in this subject's own manifest, so that a finding
    /// names a field the user can find: a VM and a VMI ReplicaSet hold the VMI spec at
    /// `spec.template.spec`, a pool one level deeper in its VM template, a standalone VMI at
    /// `spec` (see the types in `kubevirt/objects.rs`).
    #[must_use]
    pub fn spec_path(&self, field: &str) -> String {
        let prefix = match self.object.kind.as_str() {
            "VirtualMachineInstance" => "spec",
            "VirtualMachinePool" => "spec.virtualMachineTemplate.spec.template.spec",
            // VirtualMachine and VirtualMachineInstanceReplicaSet.
            _ => "spec.template.spec",
        };
        format!("{prefix}.{field}")
    }

    /// Where an eviction strategy came from, in words; a template's value is named by its path
    /// in this subject's manifest.
    #[must_use]
    pub fn eviction_source(&self, source: &EvictionSource) -> String {
        match source {
            EvictionSource::Template => self.spec_path("evictionStrategy"),
            other => other.to_string(),
        }
    }

    /// Whether this subject is a standalone VMI (no VM, replica set or pool owns it).
    #[must_use]
    pub fn is_standalone_vmi(&self) -> bool {
        self.template.is_none() && self.vmi.is_some()
    }
}

fn object_ref(kind: &str, meta: &ObjectMeta) -> ObjectRef {
    ObjectRef {
        kind: kind.to_string(),
        namespace: Some(meta.namespace.clone().unwrap_or_else(|| "default".into())),
        name: meta.name.clone().unwrap_or_default(),
        source: None,
    }
}

fn same_namespace(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.namespace.as_deref().unwrap_or("default") == b.namespace.as_deref().unwrap_or("default")
}

/// Whether `vmi` is owned by something KubeVirt restarts it from (a VM, a replica set, a pool's VM).
fn has_kubevirt_owner(vmi: &VirtualMachineInstance) -> bool {
    vmi.metadata.owner_references.iter().flatten().any(|o| {
        o.api_version.starts_with("kubevirt.io/")
            && matches!(
                o.kind.as_str(),
                "VirtualMachine" | "VirtualMachineInstanceReplicaSet"
            )
    })
}

/// The subjects of `snapshot`, in input order: VMs (with their VMI), pools, replica sets, then
/// VMIs that no VM, replica set or pool owns. VMIs that are owned are audited through their owner.
#[must_use]
pub fn subjects(snapshot: &ClusterSnapshot) -> Vec<Subject<'_>> {
    let mut out = Vec::new();
    for vm in &snapshot.vms {
        let vmi = snapshot
            .vmis
            .iter()
            .find(|i| i.metadata.name == vm.metadata.name && same_namespace(&i.metadata, &vm.metadata));
        out.push(Subject {
            object: object_ref("VirtualMachine", &vm.metadata),
            annotations: vm.metadata.annotations.as_ref().unwrap_or(&EMPTY),
            vm_spec: Some(&vm.spec),
            template: Some(&vm.spec.template),
            vmi,
        });
    }
    for pool in &snapshot.pools {
        let spec = &pool.spec.virtual_machine_template.spec;
        out.push(Subject {
            object: object_ref("VirtualMachinePool", &pool.metadata),
            annotations: pool.metadata.annotations.as_ref().unwrap_or(&EMPTY),
            vm_spec: Some(spec),
            template: Some(&spec.template),
            vmi: None,
        });
    }
    for rs in &snapshot.replica_sets {
        out.push(Subject {
            object: object_ref("VirtualMachineInstanceReplicaSet", &rs.metadata),
            annotations: rs.metadata.annotations.as_ref().unwrap_or(&EMPTY),
            vm_spec: None,
            template: Some(&rs.spec.template),
            vmi: None,
        });
    }
    for vmi in &snapshot.vmis {
        let owned_by_listed_vm = snapshot
            .vms
            .iter()
            .any(|vm| vm.metadata.name == vmi.metadata.name && same_namespace(&vm.metadata, &vmi.metadata));
        if owned_by_listed_vm || has_kubevirt_owner(vmi) {
            continue;
        }
        out.push(Subject {
            object: object_ref("VirtualMachineInstance", &vmi.metadata),
            annotations: vmi.metadata.annotations.as_ref().unwrap_or(&EMPTY),
            vm_spec: None,
            template: None,
            vmi: Some(vmi),
        });
    }
    out
}
