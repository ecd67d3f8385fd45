//! The migration options of one VMI: which MigrationPolicy KubeVirt applies to it, and the
//! cluster's options overridden field by field by that policy.

use std::collections::BTreeMap;

use super::cluster::{ClusterConfig, MigrationOptionSource};
use crate::kubevirt::MigrationPolicy;

/// The migration options KubeVirt would give a migration of one VMI: the cluster's, overridden
/// field by field by the MigrationPolicy that selects the VMI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationSettings {
    /// Seconds allowed per GiB of migrated data; 0 means no completion timeout.
    pub completion_timeout_per_gib: u64,
    /// Whether libvirt may throttle the guest's vCPUs so that the copy converges.
    pub allow_auto_converge: bool,
    /// Whether a migration that runs out of time may switch to post-copy.
    pub allow_post_copy: bool,
    /// Where the settings come from, in words: the matching policy, else the CR, else the
    /// default (for the precise origin of each value see the two fields below).
    pub source: String,
    /// Where `completion_timeout_per_gib` was read.
    pub timeout_source: MigrationOptionSource,
    /// Where `allow_auto_converge` and `allow_post_copy` were read.
    pub convergence_source: MigrationOptionSource,
    /// Policies that select the VMI's labels but also have a `namespaceSelector` that could not
    /// be checked because the namespace's labels are unknown; they were taken not to match.
    pub unchecked_policies: Vec<String>,
}

/// How well one policy matches: the numbers of its VMI and namespace labels that matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MatchScore {
    vmi: usize,
    namespace: usize,
}

impl MatchScore {
    /// KubeVirt's order: more matching labels in total wins; on a tie, more VMI labels wins.
    fn key(self) -> (usize, usize) {
        (self.vmi + self.namespace, self.vmi)
    }
}

fn all_present(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The MigrationPolicy KubeVirt applies to a VMI with `vmi_labels` in a namespace with
/// `namespace_labels`, as `matchPolicy` in KubeVirt's
/// `pkg/virt-controller/watch/migration/migrationpolicy.go` chooses it:
///
/// - a policy matches when every pair of its `virtualMachineInstanceSelector` is among the VMI's
///   labels and every pair of its `namespaceSelector` among the namespace's; a policy without
///   `selectors` matches nothing, and empty selectors match every VMI;
/// - of the matching policies the one with the most matching labels (VMI and namespace
///   together) wins; on a tie, the one with more matching VMI labels; on a further tie, the
///   one whose name sorts first.
///
/// `namespace_labels` is `None` when the namespace's labels are not known (the snapshot holds
/// no Namespace objects): a policy with a non-empty `namespaceSelector` is then taken not to
/// match, and is returned in the second list so that messages can say so.
///
/// Not reproduced: KubeVirt skips both selectors of a VMI that has no labels at all (a nil
/// map). A VMI being migrated always carries the labels virt-controller sets
/// (`kubevirt.io/nodeName`), so that case does not arise in a migration.
#[must_use]
pub fn matching_policy<'a>(
    policies: &'a [MigrationPolicy],
    vmi_labels: &BTreeMap<String, String>,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> (Option<&'a MigrationPolicy>, Vec<String>) {
    let mut best: Option<(&MigrationPolicy, MatchScore)> = None;
    let mut unchecked = Vec::new();
    for policy in policies {
        let Some(selectors) = &policy.spec.selectors else {
            continue;
        };
        if !all_present(&selectors.virtual_machine_instance_selector, vmi_labels) {
            continue;
        }
        let namespace_ok = match namespace_labels {
            Some(labels) => all_present(&selectors.namespace_selector, labels),
            None if selectors.namespace_selector.is_empty() => true,
            None => {
                unchecked.push(policy.metadata.name.clone().unwrap_or_default());
                false
            }
        };
        if !namespace_ok {
            continue;
        }
        let score = MatchScore {
            vmi: selectors.virtual_machine_instance_selector.len(),
            namespace: selectors.namespace_selector.len(),
        };
        let better = match best {
            None => true,
            Some((current, current_score)) => {
                score.key() > current_score.key()
                    || (score.key() == current_score.key() && policy.metadata.name < current.metadata.name)
            }
        };
        if better {
            best = Some((policy, score));
        }
    }
    (best.map(|(p, _)| p), unchecked)
}

/// The migration settings of a VMI: the cluster's (`cluster`), overridden by each field the
/// matching policy (see [`matching_policy`]) sets, as `applyMigrationPolicySpec` does.
#[must_use]
pub fn migration_settings(
    cluster: &ClusterConfig,
    policies: &[MigrationPolicy],
    vmi_labels: &BTreeMap<String, String>,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> MigrationSettings {
    let (policy, unchecked_policies) = matching_policy(policies, vmi_labels, namespace_labels);
    let mut settings = MigrationSettings {
        completion_timeout_per_gib: cluster.completion_timeout_per_gib,
        allow_auto_converge: cluster.allow_auto_converge,
        allow_post_copy: cluster.allow_post_copy,
        source: String::new(),
        timeout_source: cluster.completion_timeout_source.clone(),
        convergence_source: cluster.convergence_source.clone(),
        unchecked_policies,
    };
    let Some(policy) = policy else {
        settings.source = match (&settings.timeout_source, &settings.convergence_source) {
            (MigrationOptionSource::Default, other) | (other, _) => other.to_string(),
        };
        return settings;
    };
    let name = policy.metadata.name.clone().unwrap_or_default();
    let from_policy = MigrationOptionSource::Policy(name);
    let spec = &policy.spec;
    if let Some(n) = spec
        .completion_timeout_per_gib
        .and_then(|n| u64::try_from(n).ok())
    {
        settings.completion_timeout_per_gib = n;
        settings.timeout_source = from_policy.clone();
    }
    if let Some(b) = spec.allow_auto_converge {
        settings.allow_auto_converge = b;
        settings.convergence_source = from_policy.clone();
    }
    if let Some(b) = spec.allow_post_copy {
        settings.allow_post_copy = b;
        settings.convergence_source = from_policy.clone();
    }
    settings.source = from_policy.to_string();
    settings
}
