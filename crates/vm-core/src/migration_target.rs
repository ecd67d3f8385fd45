//! The migration target pod as the scheduler will see it: the launcher pod KubeVirt rendered
//! (live) or would render (from manifests), plus what virt-controller adds to a migration
//! target (reference `kubevirt-pod-constraints.md` §3): the source node's CPU vendor, and for
//! host-model guests the source's host model and its required CPU features, carried forward
//! from the source pod once a VM has migrated.
//!
//! The self anti-affinity that keeps a target off its source node is not modelled as a term:
//! the planners never offer the source node.

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod};

use crate::effective::ClusterConfig;
use crate::kubevirt::VirtualMachineInstance;
use crate::placement::{Constraints, pod_requests};
use crate::resources::{Requests, dedicated_cpus, vmi_launcher_requests};
use crate::snapshot::ClusterSnapshot;

mod cpu_model;
mod tsc;

pub use cpu_model::{HOST_MODEL, HOST_PASSTHROUGH, effective_cpu_model};
pub use tsc::{TSC_FREQUENCY_PREFIX, needs_tsc_frequency, tsc_frequency_label};
// Indexed beside the placement engine, which reads a VMI's running pod from it too.
pub use crate::placement::TargetSources;

/// Label prefixes the node-labeller writes and migration targets select.
pub const VENDOR_PREFIX: &str = "cpu-vendor.node.kubevirt.io/";
/// The node's host CPU model.
pub const HOST_MODEL_PREFIX: &str = "host-model-cpu.node.kubevirt.io/";
/// Features the node's host model requires.
pub const HOST_MODEL_FEATURE_PREFIX: &str = "host-model-required-features.node.kubevirt.io/";
/// Models a target node can take a migration of.
pub const MIGRATION_MODEL_PREFIX: &str = "cpu-model-migration.node.kubevirt.io/";
/// CPU features a node offers.
pub const FEATURE_PREFIX: &str = "cpu-feature.node.kubevirt.io/";
/// Named CPU models a node can run.
pub const MODEL_PREFIX: &str = "cpu-model.node.kubevirt.io/";
/// Nodes whose CPU manager gives out whole CPUs.
pub const CPU_MANAGER_LABEL: &str = "kubevirt.io/cpumanager";
/// Machine types a node's libvirt offers.
pub const MACHINE_TYPE_PREFIX: &str = "machine-type.node.kubevirt.io/";
/// Nodes whose host model the cluster lists as obsolete; host-model launcher pods avoid them.
pub const OBSOLETE_HOST_MODEL_LABEL: &str = "node-labeller.kubevirt.io/obsolete-host-model";
/// The node's architecture, as the kubelet labels it.
pub const ARCH_LABEL: &str = "kubernetes.io/arch";

/// Whether the guest's CPU model is host-model (the default when neither the VMI nor the
/// cluster names one, except on arm64: see [`effective_cpu_model`]).
#[must_use]
pub fn is_host_model(vmi: &VirtualMachineInstance, cluster: &ClusterConfig) -> bool {
    effective_cpu_model(vmi, cluster).0 == HOST_MODEL
}

/// The launcher pod's constraints rendered from the VMI spec as virt-controller does
/// (reference §1a, §1b): the VMI's own selectors, affinity and tolerations, the cluster-wide
/// selectors, the architecture and machine type, the CPU manager label for dedicated CPUs, a
/// named CPU model, required CPU features (EVMCS implies `vmx`), realtime and confidential
/// computing; and, ANDed into every required node-affinity term, `DoesNotExist` for the
/// obsolete-host-model label (host-model guests) and for each forbidden CPU feature.
///
/// The machine type is the expanded one virt-handler reported in the VMI's status where there
/// is one: a migration target of this VMI is rendered with it. A guest that needs an invariant
/// TSC selects the frequency of its topology hints.
///
/// Where KubeVirt derives a selector (dedicated CPUs, CPU model and features, machine type,
/// TSC, realtime, confidential computing) it writes `"true"` over any value the VMI's own
/// nodeSelector gives the same key (`nodeselectorrenderer.go` `Render` runs after the VMI's
/// selectors are merged); the architecture and the cluster-wide selectors yield to the VMI's.
#[must_use]
pub fn rendered_constraints(vmi: &VirtualMachineInstance, cluster: &ClusterConfig) -> Constraints {
    render(vmi, cluster, true)
}

/// [`rendered_constraints`], for the VMI's current pod (`reported_machine`: the status's
/// machine type counts) or for a new VMI of the same spec (it does not: the VM starts anew).
fn render(vmi: &VirtualMachineInstance, cluster: &ClusterConfig, reported_machine: bool) -> Constraints {
    let mut c = Constraints::of(&vmi.spec);
    for (k, v) in &cluster.node_selectors {
        c.node_selector.entry(k.clone()).or_insert_with(|| v.clone());
        c.origins
            .insert(k.clone(), "KubeVirt's cluster-wide nodeSelectors".into());
    }
    let arch = architecture(vmi);
    if !c.node_selector.contains_key(ARCH_LABEL) {
        c.node_selector.insert(ARCH_LABEL.into(), arch.clone());
        c.origins
            .insert(ARCH_LABEL.into(), format!("the VM's architecture {arch}"));
    }
    let mut add = |key: String, value: String, why: String| {
        c.node_selector.insert(key.clone(), value);
        c.origins.insert(key, why);
    };
    let machine = machine_type(vmi, &arch, reported_machine);
    add(
        format!("{MACHINE_TYPE_PREFIX}{machine}"),
        "true".into(),
        format!("machine type {machine}"),
    );
    if dedicated_cpus(&vmi.spec, None) {
        add(CPU_MANAGER_LABEL.into(), "true".into(), "dedicated CPUs".into());
    }
    let cpu = vmi.spec.domain.cpu.as_ref();
    let (model, why) = effective_cpu_model(vmi, cluster);
    if model != HOST_MODEL && model != HOST_PASSTHROUGH {
        add(format!("{MODEL_PREFIX}{model}"), "true".into(), why);
    }
    let features = cpu.map(|c| c.features.as_slice()).unwrap_or_default();
    for f in features {
        if matches!(f.policy.as_deref(), None | Some("" | "require")) {
            add(
                format!("{FEATURE_PREFIX}{}", f.name),
                "true".into(),
                format!("required CPU feature {}", f.name),
            );
        }
    }
    if evmcs_enabled(vmi) {
        add(
            format!("{FEATURE_PREFIX}vmx"),
            "true".into(),
            "required CPU feature vmx (Hyper-V EVMCS)".into(),
        );
    }
    if let Some((key, hz)) = tsc_frequency_label(vmi) {
        add(
            key,
            "true".into(),
            format!("invariant TSC at the cluster's {hz} Hz (status.topologyHints)"),
        );
    }
    if cpu.is_some_and(|c| c.realtime.is_some()) {
        add(
            "kubevirt.io/realtime".into(),
            "true".into(),
            "realtime CPU".into(),
        );
    }
    for label in launch_security_labels(vmi) {
        add(label.into(), "true".into(), "confidential computing".into());
    }
    let mut absent: Vec<String> = features
        .iter()
        .filter(|f| f.policy.as_deref() == Some("forbid"))
        .map(|f| format!("{FEATURE_PREFIX}{}", f.name))
        .collect();
    if is_host_model(vmi, cluster) {
        absent.insert(0, OBSOLETE_HOST_MODEL_LABEL.into());
    }
    and_does_not_exist(&mut c.required_terms, &absent);
    c
}

/// The VMI's architecture, lower-cased as KubeVirt selects it; `amd64` (virt-api's own, on
/// nearly every cluster) when the webhook has not filled it in yet.
fn architecture(vmi: &VirtualMachineInstance) -> String {
    vmi.spec
        .architecture
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("amd64")
        .to_lowercase()
}

/// The machine type a launcher pod selects: the expanded one virt-handler reported in the
/// status (when `reported` counts), else the spec's, else the architecture's default.
fn machine_type(vmi: &VirtualMachineInstance, arch: &str, reported: bool) -> String {
    let reported = reported
        .then(|| vmi.status.as_ref()?.machine.as_ref()?.type_.clone())
        .flatten();
    let asked = vmi.spec.domain.machine.as_ref().and_then(|m| m.type_.clone());
    reported.or(asked).filter(|t| !t.is_empty()).unwrap_or_else(|| {
        match arch {
            "arm64" => "virt",
            "s390x" => "s390-ccw-virtio",
            _ => "q35",
        }
        .into()
    })
}

/// Whether Hyper-V EVMCS is on (present and not `enabled: false`).
fn evmcs_enabled(vmi: &VirtualMachineInstance) -> bool {
    let evmcs = vmi
        .spec
        .domain
        .features
        .as_ref()
        .and_then(|f| f.pointer("/hyperv/evmcs"));
    evmcs.is_some_and(|e| e.get("enabled").and_then(serde_json::Value::as_bool) != Some(false))
}

/// The node labels `launchSecurity` selects: SEV (and SEV-ES with an encrypted-state policy),
/// SEV-SNP, or TDX.
fn launch_security_labels(vmi: &VirtualMachineInstance) -> Vec<&'static str> {
    let Some(ls) = vmi.spec.domain.launch_security.as_ref() else {
        return Vec::new();
    };
    let mut labels = Vec::new();
    if let Some(sev) = ls.get("sev") {
        labels.push("kubevirt.io/sev");
        if sev
            .pointer("/policy/encryptedState")
            .and_then(serde_json::Value::as_bool)
            == Some(true)
        {
            labels.push("kubevirt.io/sev-es");
        }
    }
    if ls.get("snp").is_some() {
        labels.extend(["kubevirt.io/sev", "kubevirt.io/sev-snp"]);
    }
    if ls.get("tdx").is_some() {
        labels.push("kubevirt.io/tdx");
    }
    labels.dedup();
    labels
}

/// ANDs `key DoesNotExist` for each key into every required node-affinity term, or adds them as
/// the only term when there is none (virt-controller's rendering, §1b).
fn and_does_not_exist(terms: &mut Vec<NodeSelectorTerm>, keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    let requirements = keys.iter().map(|key| NodeSelectorRequirement {
        key: key.clone(),
        operator: "DoesNotExist".into(),
        values: None,
    });
    if terms.is_empty() {
        terms.push(NodeSelectorTerm::default());
    }
    for term in terms.iter_mut() {
        term.match_expressions
            .get_or_insert_with(Vec::new)
            .extend(requirements.clone());
    }
}

/// The label and annotation KubeVirt puts on a migration target pod: its migration's UID and
/// name.
const MIGRATION_JOB_UID_LABEL: &str = "kubevirt.io/migrationJobUID";
const MIGRATION_JOB_NAME_ANNOTATION: &str = "kubevirt.io/migrationJobName";

/// A running launcher pod that was the target of an earlier migration carries that
/// migration's `spec.addedNodeSelector` (a rolling round's steering label, say). KubeVirt
/// renders the next target pod from the VMI, with only the next migration's own added
/// selector: the earlier one's entries are dropped here, unless the VMI itself selects them.
fn drop_earlier_added_selector(
    c: &mut Constraints,
    pod: &Pod,
    snapshot: &ClusterSnapshot,
    vmi: &VirtualMachineInstance,
) {
    let uid = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MIGRATION_JOB_UID_LABEL));
    let name = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MIGRATION_JOB_NAME_ANNOTATION));
    if uid.is_none() && name.is_none() {
        return;
    }
    let earlier = snapshot.migrations.iter().find(|m| {
        let same_uid = uid.is_some() && m.metadata.uid.as_ref() == uid;
        let same_name = name.is_some()
            && m.metadata.name.as_ref() == name
            && m.metadata.namespace == pod.metadata.namespace;
        same_uid || same_name
    });
    let own = vmi.spec.node_selector.clone().unwrap_or_default();
    for (k, v) in earlier
        .and_then(|m| m.spec.added_node_selector.as_ref())
        .into_iter()
        .flatten()
    {
        if !own.contains_key(k) && c.node_selector.get(k) == Some(v) {
            c.node_selector.remove(k);
        }
    }
}

/// What the scheduler will see of the migration target of `vmi`: constraints and requests.
///
/// Live, the base is the running launcher pod (what KubeVirt really rendered, its requests
/// overhead included), with the VMI's current nodeSelector and tolerations over it (KubeVirt
/// re-renders the target from the current VMI, and live-updates move them there). From
/// manifests, the pod is rendered from the VMI spec.
///
/// # Errors
/// KubeVirt creates no target pod at all: a host-model guest on a source node without a
/// host-model label (while other nodes have one).
pub fn migration_target(
    snapshot: &ClusterSnapshot,
    vmi: &VirtualMachineInstance,
    cluster: &ClusterConfig,
) -> Result<(Constraints, Requests), String> {
    migration_target_with(snapshot, &TargetSources::of(snapshot), vmi, cluster)
}

/// [`migration_target`] with the launcher pods already indexed.
///
/// # Errors
/// As [`migration_target`].
pub fn migration_target_with(
    snapshot: &ClusterSnapshot,
    launchers: &TargetSources<'_>,
    vmi: &VirtualMachineInstance,
    cluster: &ClusterConfig,
) -> Result<(Constraints, Requests), String> {
    let source_name = vmi.status.as_ref().and_then(|s| s.node_name.as_deref());
    let source = source_name.and_then(|n| launchers.node(n));
    let (mut constraints, requests) = match launchers.of_vmi(vmi) {
        Some(pod) => {
            let mut c = Constraints::of_pod(pod);
            drop_earlier_added_selector(&mut c, pod, snapshot, vmi);
            for (k, v) in vmi.spec.node_selector.iter().flatten() {
                // A key KubeVirt derives keeps the value it rendered into the pod.
                if !(is_derived_key(k) && c.node_selector.contains_key(k)) {
                    c.node_selector.insert(k.clone(), v.clone());
                }
            }
            use_reported_machine_type(&mut c, vmi);
            c.tolerations = vmi.spec.tolerations.clone().unwrap_or_default();
            (c, pod_requests(pod))
        }
        None => (
            running_launcher_constraints(snapshot, vmi, cluster),
            vmi_launcher_requests(snapshot, vmi, cluster).unwrap_or_default(),
        ),
    };
    add_migration_selectors(&mut constraints, vmi, cluster, source, snapshot)?;
    Ok((constraints, requests))
}

/// Whether KubeVirt derives selector `key` from the VMI (`nodeselectorrenderer.go` `Render`
/// writes these after the VMI's own selectors, so a VMI value for the same key never reaches the
/// pod).
fn is_derived_key(key: &str) -> bool {
    [
        MACHINE_TYPE_PREFIX,
        MODEL_PREFIX,
        FEATURE_PREFIX,
        TSC_FREQUENCY_PREFIX,
        "hyperv.node.kubevirt.io/",
    ]
    .iter()
    .any(|p| key.starts_with(p))
        || matches!(
            key,
            CPU_MANAGER_LABEL
                | "kubevirt.io/realtime"
                | "kubevirt.io/sev"
                | "kubevirt.io/sev-es"
                | "kubevirt.io/sev-snp"
                | "kubevirt.io/s390-pv"
                | "kubevirt.io/tdx"
        )
}

/// The running pod selects the machine type its VMI asked for (`q35`), but KubeVirt renders the
/// target from `status.machine.type`, the expanded name virt-handler reported
/// (`pc-q35-rhel9.6.0`; `template.go` `newNodeSelectorRenderer`, `pkg/virt-handler/vm.go`
/// `updateMachineType`): the pod's machine-type selector gives way to the status's.
fn use_reported_machine_type(c: &mut Constraints, vmi: &VirtualMachineInstance) {
    let Some(reported) = vmi
        .status
        .as_ref()
        .and_then(|s| s.machine.as_ref())
        .and_then(|m| m.type_.as_deref())
        .filter(|t| !t.is_empty())
    else {
        return;
    };
    c.node_selector.retain(|k, _| !k.starts_with(MACHINE_TYPE_PREFIX));
    c.origins.retain(|k, _| !k.starts_with(MACHINE_TYPE_PREFIX));
    let key = format!("{MACHINE_TYPE_PREFIX}{reported}");
    c.node_selector.insert(key.clone(), "true".into());
    c.origins
        .insert(key, format!("machine type {reported} (status.machine.type)"));
}

/// The constraints of the launcher pod `vmi` runs in now, rendered from its spec for a VMI
/// read without its pod: those of [`rendered_constraints`] (the reported machine type counts),
/// without the selectors of label families no node of the snapshot carries. A planner that
/// simulates moves gives such a VMI this pod, so that its room is taken where it runs.
#[must_use]
pub fn running_launcher_constraints(
    snapshot: &ClusterSnapshot,
    vmi: &VirtualMachineInstance,
    cluster: &ClusterConfig,
) -> Constraints {
    let mut c = rendered_constraints(vmi, cluster);
    drop_unlabelled_families(&mut c, snapshot);
    c
}

/// The constraints of a new launcher pod for `vmi` (a VM started again elsewhere, so the
/// machine type its status reports does not count): those of [`rendered_constraints`], without
/// the selectors of label families no node of the snapshot carries (see
/// [`drop_unlabelled_families`]).
#[must_use]
pub fn launcher_constraints(
    snapshot: &ClusterSnapshot,
    vmi: &VirtualMachineInstance,
    cluster: &ClusterConfig,
) -> Constraints {
    let mut c = render(vmi, cluster, false);
    drop_unlabelled_families(&mut c, snapshot);
    c
}

/// The label family of a selector key KubeVirt adds: its prefix up to the `/`, or the whole
/// key for single labels such as `kubevirt.io/cpumanager`.
fn family(key: &str) -> &str {
    match key.find(".node.kubevirt.io/") {
        Some(at) => &key[..at + ".node.kubevirt.io/".len()],
        None => key,
    }
}

/// Drops the selectors KubeVirt adds whose label family no node carries at all: such nodes
/// come from manifests written by hand (or a cluster without the node-labeller), and a
/// verdict of "no node has it" would be about the input, not the cluster.
fn drop_unlabelled_families(c: &mut Constraints, snapshot: &ClusterSnapshot) {
    let known = |fam: &str| {
        snapshot.nodes.iter().any(|n| {
            n.metadata
                .labels
                .iter()
                .flatten()
                .any(|(k, _)| k.starts_with(fam))
        })
    };
    let unknown: Vec<String> = c.origins.keys().filter(|k| !known(family(k))).cloned().collect();
    for key in unknown {
        c.node_selector.remove(&key);
        c.origins.remove(&key);
    }
}

/// §3: the vendor of the source node, and for host-model guests its host model and required
/// features (or the ones the source pod already carries from an earlier migration).
fn add_migration_selectors(
    c: &mut Constraints,
    vmi: &VirtualMachineInstance,
    cluster: &ClusterConfig,
    source: Option<&Node>,
    snapshot: &ClusterSnapshot,
) -> Result<(), String> {
    let Some(source) = source else {
        return Ok(());
    };
    let source_name = source.metadata.name.clone().unwrap_or_default();
    let labels = source.metadata.labels.clone().unwrap_or_default();
    if is_host_model(vmi, cluster) {
        let carried: Vec<String> = c
            .node_selector
            .keys()
            .filter(|k| k.contains(FEATURE_PREFIX) || k.contains(MIGRATION_MODEL_PREFIX))
            .cloned()
            .collect();
        if !carried.is_empty() {
            for key in carried {
                c.origins.entry(key).or_insert_with(|| {
                    format!("host-model, carried from the VM's earlier host by its pod on node {source_name}")
                });
            }
        } else if let Some(model) = labels.keys().find_map(|k| k.strip_prefix(HOST_MODEL_PREFIX)) {
            let why = format!("host-model on node {source_name}");
            c.node_selector
                .insert(format!("{MIGRATION_MODEL_PREFIX}{model}"), "true".into());
            c.origins
                .insert(format!("{MIGRATION_MODEL_PREFIX}{model}"), why.clone());
            for feature in labels
                .keys()
                .filter_map(|k| k.strip_prefix(HOST_MODEL_FEATURE_PREFIX))
            {
                let key = format!("{FEATURE_PREFIX}{feature}");
                c.node_selector.insert(key.clone(), "true".into());
                c.origins.insert(key, why.clone());
            }
        } else if snapshot_has_host_models(snapshot) {
            return Err(format!(
                "the VM uses host-model and node {source_name} has no {HOST_MODEL_PREFIX}* label, so KubeVirt \
                 creates no migration target pod (NoSuitableNodesForHostModelMigration)"
            ));
        }
    }
    if !c.node_selector.keys().any(|k| k.starts_with(VENDOR_PREFIX))
        && let Some(vendor) = labels.keys().find(|k| k.starts_with(VENDOR_PREFIX))
    {
        c.node_selector.insert(vendor.clone(), "true".into());
        c.origins
            .insert(vendor.clone(), format!("the CPU vendor of node {source_name}"));
    }
    Ok(())
}

fn snapshot_has_host_models(snapshot: &ClusterSnapshot) -> bool {
    // Asked only for a host-model guest on a node without the label: rare, so not indexed.
    snapshot.nodes.iter().any(|n| {
        n.metadata
            .labels
            .iter()
            .flatten()
            .any(|(k, _)| k.starts_with(HOST_MODEL_PREFIX))
    })
}

#[cfg(test)]
mod tests;
