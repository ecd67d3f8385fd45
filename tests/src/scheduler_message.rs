//! kube-scheduler's "0/7 nodes are available: ..." message (a pod's `PodScheduled=False`
//! condition, the `FailedScheduling` event), read back into the filters it names.
//!
//! The message is `0/N nodes are available: ` followed by
//! - the reasons of the filters, `COUNT REASON` sorted and joined by `, ` (or, when a PreFilter
//!   rejected the pod, that plugin's own words, with no count), ending with `.`;
//! - since 1.24 or so, the PostFilter plugins' words after it, in their own sentence:
//!   the DRA plugin's `no new claims to deallocate`, and preemption's `preemption: 0/N nodes
//!   are available: 3 Preemption is not helpful for scheduling.` (pkg/scheduler/schedule_one.go,
//!   `FitError.Error`). They say what would not help, not what keeps the pod off a node, and
//!   are left out here.
//!
//! The reasons' wordings are those of pkg/scheduler/framework/plugins/ in kubernetes/kubernetes,
//! at v1.20.2 and today; where they changed, both are read.

/// The part of an inter-pod (anti-)affinity rule that a node fails (the InterPodAffinity filter).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodAffinityRule {
    /// The pod's own required affinity (`didn't match pod affinity rules`).
    Affinity,
    /// The pod's own required anti-affinity (`didn't match pod anti-affinity rules`).
    AntiAffinity,
    /// The anti-affinity of pods already on the node (`didn't satisfy existing pods
    /// anti-affinity rules`).
    ExistingAntiAffinity,
    /// 1.20's summary that came with either of the pod's own rules (`didn't match pod
    /// affinity/anti-affinity`; gone since 1.22).
    Either,
}

/// One scheduler filter (plugin) that rejected some nodes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Filter {
    /// NodeUnschedulable: cordoned (`node(s) were unschedulable`).
    NodeUnschedulable,
    /// NodeName: `spec.nodeName` names another node.
    NodeName,
    /// TaintToleration, with the taint (`key: value`) where the message names it (1.20 to
    /// 1.31 did; later releases only count the nodes).
    TaintToleration(Option<String>),
    /// NodeAffinity: the pod's nodeSelector or required node affinity, or the scheduler's
    /// enforced one.
    NodeAffinity,
    /// NodePorts: a host port taken.
    NodePorts,
    /// NodeResourcesFit: not enough of this resource (`pods` for `Too many pods`).
    NodeResourcesFit(String),
    /// InterPodAffinity.
    InterPodAffinity(PodAffinityRule),
    /// PodTopologySpread: a spread constraint, or the node lacks its topology label.
    PodTopologySpread,
    /// VolumeBinding, VolumeRestrictions, VolumeZone, NodeVolumeLimits: the pod's volumes.
    Volumes(String),
    /// DynamicResources: the pod's resource claims.
    DynamicResources(String),
    /// Words this reader does not know.
    Unknown(String),
}

/// One reason of the message: how many nodes it rejected (`None` for a PreFilter's words,
/// which reject every node), and the filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// The nodes it rejected, as the message counts them.
    pub nodes: Option<u32>,
    /// The filter.
    pub filter: Filter,
}

/// The filter that one reason's words come from.
#[must_use]
pub fn filter_of(words: &str) -> Filter {
    let w = words.trim();
    if w.contains("were unschedulable") {
        return Filter::NodeUnschedulable;
    }
    // Before the node affinity phrases: "didn't match the requested node name" (1.21+),
    // "didn't match the requested hostname" (1.20).
    if w.contains("the requested node name") || w.contains("the requested hostname") {
        return Filter::NodeName;
    }
    if w.contains("taint") {
        let named = w
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(taint, _)| taint.to_string());
        return Filter::TaintToleration(named);
    }
    if let Some(resource) = w.strip_prefix("Insufficient ") {
        return Filter::NodeResourcesFit(resource.to_string());
    }
    if w == "Too many pods" {
        return Filter::NodeResourcesFit("pods".into());
    }
    if w.contains("free ports") {
        return Filter::NodePorts;
    }
    // 1.20: "didn't match node selector"; then "didn't match Pod's node affinity" and
    // "didn't match Pod's node affinity/selector"; "didn't match scheduler-enforced node
    // affinity"; NodeAffinity's PreFilter: "pod affinity terms conflict".
    if w.contains("node selector")
        || w.contains("node affinity/selector")
        || w.contains("Pod's node affinity")
        || w.contains("scheduler-enforced node affinity")
        || w.contains("affinity terms conflict")
    {
        return Filter::NodeAffinity;
    }
    // Before the inter-pod phrases: "had volume node affinity conflict".
    if w.contains("volume")
        || w.contains("persistentvolume")
        || w.contains("PersistentVolumeClaim")
        || w.contains("pvc")
        || w.contains("free storage")
        || w.contains("available disk")
    {
        return Filter::Volumes(w.to_string());
    }
    if w.contains("topology spread constraints") {
        return Filter::PodTopologySpread;
    }
    if w.contains("existing pods anti-affinity") {
        return Filter::InterPodAffinity(PodAffinityRule::ExistingAntiAffinity);
    }
    if w.contains("pod anti-affinity rules") {
        return Filter::InterPodAffinity(PodAffinityRule::AntiAffinity);
    }
    if w.contains("pod affinity rules") {
        return Filter::InterPodAffinity(PodAffinityRule::Affinity);
    }
    if w.contains("pod affinity/anti-affinity") {
        return Filter::InterPodAffinity(PodAffinityRule::Either);
    }
    if w.contains("claim") || w.contains("device") {
        return Filter::DynamicResources(w.to_string());
    }
    Filter::Unknown(w.to_string())
}

/// The filter reasons of a kube-scheduler message; the PostFilter sentences after them
/// (preemption, DRA deallocation) are left out. A message not in the scheduler's shape gives
/// one `Unknown` reason with all of it.
#[must_use]
pub fn parse(message: &str) -> Vec<Reason> {
    let Some((_, body)) = message.split_once("nodes are available: ") else {
        return vec![Reason {
            nodes: None,
            filter: Filter::Unknown(message.trim().to_string()),
        }];
    };
    // The filters' sentence ends at the first ". "; PostFilter sentences follow. No reason's
    // words hold ". " (a resource like nvidia.com/gpu holds a dot, never a dot and a space).
    let filters = match body.split_once(". ") {
        Some((filters, _postfilter)) => filters,
        None => body.trim_end().trim_end_matches('.'),
    };
    // Reasons are joined by ", ", each "COUNT words"; a piece without a count goes on the
    // reason before it (1.20's taint reason holds ", that the pod didn't tolerate").
    let mut reasons: Vec<(Option<u32>, String)> = Vec::new();
    for piece in filters.split(", ") {
        let counted = piece
            .split_once(' ')
            .and_then(|(n, rest)| Some((n.parse::<u32>().ok()?, rest)));
        match (counted, reasons.last_mut()) {
            (Some((n, words)), _) => reasons.push((Some(n), words.to_string())),
            (None, Some((_, words))) => {
                words.push_str(", ");
                words.push_str(piece);
            }
            (None, None) => reasons.push((None, piece.to_string())),
        }
    }
    reasons
        .into_iter()
        .filter(|(_, words)| !words.trim().is_empty())
        .map(|(nodes, words)| Reason {
            nodes,
            filter: filter_of(&words),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(nodes: u32, filter: Filter) -> Reason {
        Reason {
            nodes: Some(nodes),
            filter,
        }
    }

    /// kube-scheduler 1.20.2, the sandbox's: the reasons of
    /// pkg/scheduler/framework/plugins/nodeunschedulable/node_unschedulable.go
    /// (`node(s) were unschedulable`), tainttoleration/taint_toleration.go (`node(s) had taint
    /// {%s: %s}, that the pod didn't tolerate`), noderesources/fit.go (`Insufficient %v`,
    /// `Too many pods`), nodeaffinity/node_affinity.go (`node(s) didn't match node
    /// selector`), interpodaffinity/filtering.go (`node(s) didn't match pod
    /// affinity/anti-affinity` with `node(s) didn't match pod anti-affinity rules`, `node(s)
    /// didn't satisfy existing pods anti-affinity rules`), podtopologyspread/filtering.go
    /// (`node(s) didn't match pod topology spread constraints`); no PostFilter sentence.
    #[test]
    fn a_1_20_message_with_every_filter_of_the_scenarios() {
        let message = "0/7 nodes are available: 1 Insufficient hugepages-1Gi, 1 Too many pods, 1 node(s) didn't match node selector, 1 node(s) didn't match pod affinity/anti-affinity, 1 node(s) didn't match pod anti-affinity rules, 1 node(s) didn't match pod topology spread constraints, 1 node(s) didn't satisfy existing pods anti-affinity rules, 1 node(s) had taint {dedicated: infra}, that the pod didn't tolerate, 1 node(s) were unschedulable, 2 Insufficient memory.";
        assert_eq!(
            parse(message),
            vec![
                reason(1, Filter::NodeResourcesFit("hugepages-1Gi".into())),
                reason(1, Filter::NodeResourcesFit("pods".into())),
                reason(1, Filter::NodeAffinity),
                reason(1, Filter::InterPodAffinity(PodAffinityRule::Either)),
                reason(1, Filter::InterPodAffinity(PodAffinityRule::AntiAffinity)),
                reason(1, Filter::PodTopologySpread),
                reason(1, Filter::InterPodAffinity(PodAffinityRule::ExistingAntiAffinity)),
                reason(1, Filter::TaintToleration(Some("dedicated: infra".into()))),
                reason(1, Filter::NodeUnschedulable),
                reason(2, Filter::NodeResourcesFit("memory".into())),
            ]
        );
    }

    /// Today's kube-scheduler: tainttoleration/taint_toleration.go says `node(s) had
    /// untolerated taint(s)`, nodeaffinity/node_affinity.go `node(s) didn't match Pod's node
    /// affinity/selector`; then the PostFilter sentence, dynamicresources' `no new claims to
    /// deallocate` and preemption's `preemption: 0/7 nodes are available: ...`
    /// (pkg/scheduler/framework/preemption/preemption.go), which name no filter.
    #[test]
    fn a_1_36_message_with_the_dra_and_preemption_sentence() {
        let message = "0/7 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) didn't match pod affinity rules, 1 node(s) didn't match pod topology spread constraints, 1 node(s) had untolerated taint(s), 1 node(s) were unschedulable, 2 Insufficient cpu. no new claims to deallocate, preemption: 0/7 nodes are available: 1 Preemption is not helpful for scheduling, 6 No preemption victims found for incoming pod.";
        assert_eq!(
            parse(message),
            vec![
                reason(1, Filter::NodeResourcesFit("nvidia.com/gpu".into())),
                reason(1, Filter::NodeAffinity),
                reason(1, Filter::InterPodAffinity(PodAffinityRule::Affinity)),
                reason(1, Filter::PodTopologySpread),
                reason(1, Filter::TaintToleration(None)),
                reason(1, Filter::NodeUnschedulable),
                reason(2, Filter::NodeResourcesFit("cpu".into())),
            ]
        );
        // Preemption alone, as without the DRA plugin.
        let message = "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
        assert_eq!(
            parse(message),
            vec![
                reason(1, Filter::TaintToleration(None)),
                reason(2, Filter::NodeAffinity),
            ]
        );
    }

    /// 1.25 to 1.31 named the taint again (`node(s) had untolerated taint {%s: %s}`); the
    /// anti-affinity reasons and the volume and node-name filters as today's plugins word them.
    #[test]
    fn the_wordings_between_and_the_other_filters() {
        let message = "0/6 nodes are available: 1 node(s) didn't match pod anti-affinity rules, 1 node(s) didn't match the requested node name, 1 node(s) didn't satisfy existing pods anti-affinity rules, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 1 node(s) had volume node affinity conflict, 1 node(s) didn't match pod topology spread constraints (missing required label). preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling.";
        assert_eq!(
            parse(message),
            vec![
                reason(1, Filter::InterPodAffinity(PodAffinityRule::AntiAffinity)),
                reason(1, Filter::NodeName),
                reason(1, Filter::InterPodAffinity(PodAffinityRule::ExistingAntiAffinity)),
                reason(
                    1,
                    Filter::TaintToleration(Some("node-role.kubernetes.io/control-plane: ".into()))
                ),
                reason(
                    1,
                    Filter::Volumes("node(s) had volume node affinity conflict".into())
                ),
                reason(1, Filter::PodTopologySpread),
            ]
        );
    }

    #[test]
    fn prefilter_words_have_no_count_and_unknown_words_stay_visible() {
        let message = "0/7 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/7 nodes are available: 7 Preemption is not helpful for scheduling.";
        assert_eq!(
            parse(message),
            vec![Reason {
                nodes: None,
                filter: Filter::Volumes("pod has unbound immediate PersistentVolumeClaims".into()),
            }]
        );
        assert_eq!(
            parse("0/2 nodes are available: 2 node(s) were frobnicated."),
            vec![reason(2, Filter::Unknown("node(s) were frobnicated".into()))]
        );
        assert_eq!(
            parse("no nodes available to schedule pods"),
            vec![Reason {
                nodes: None,
                filter: Filter::Unknown("no nodes available to schedule pods".into()),
            }]
        );
    }
}
