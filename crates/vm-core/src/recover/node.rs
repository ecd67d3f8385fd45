//! What the cluster knows about a node's health: its Ready condition, the kubelet's Lease,
//! virt-handler's heartbeat and schedulable label, and whether it is fenced (reference §7).

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::placement::SCHEDULABLE_LABEL;

/// Annotation virt-handler refreshes on its node about once a minute (RFC 3339).
pub const HEARTBEAT_ANNOTATION: &str = "kubevirt.io/heartbeat";

/// Taint of Kubernetes' non-graceful node shutdown: the node is confirmed off.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// Namespace of the kubelets' node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// virt-controller treats a node as unresponsive once its heartbeat is this old.
pub const HEARTBEAT_TIMEOUT_SECONDS: u64 = 5 * 60;

/// The kubelet's lease duration when the Lease does not say (`nodeLeaseDurationSeconds`).
pub const DEFAULT_LEASE_DURATION_SECONDS: u64 = 40;

/// The node's Ready condition, as `kubectl get nodes` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum NodeState {
    /// Ready condition True: the kubelet reports in.
    Ready,
    /// Ready condition False: the kubelet reports that the node is unhealthy.
    NotReady,
    /// Ready condition Unknown or missing: the kubelet stopped reporting (unreachable).
    Unknown,
}

/// The evidence about a node's health, each age in seconds before `now` (`null` when the
/// cluster does not record it), so the operator can judge whether the node is really gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAssessment {
    /// The Ready condition.
    pub state: NodeState,
    /// Age of the Ready condition's `lastHeartbeatTime` (the kubelet's last status update).
    pub last_heartbeat_seconds: Option<u64>,
    /// Age of the `renewTime` of the Lease `kube-node-lease/<node>`.
    pub lease_renewed_seconds: Option<u64>,
    /// That `renewTime` itself (RFC 3339): a fencing run compares it with the Lease before
    /// each destructive step, and stops if the kubelet renewed it since the assessment.
    pub lease_renew_time: Option<String>,
    /// Age of virt-handler's `kubevirt.io/heartbeat` annotation.
    pub kubevirt_heartbeat_seconds: Option<u64>,
    /// Value of the `kubevirt.io/schedulable` label.
    pub schedulable: Option<String>,
    /// `spec.unschedulable`.
    pub cordoned: bool,
    /// The `node.kubernetes.io/out-of-service` taint is present: someone confirmed it is off.
    pub out_of_service: bool,
    /// The Lease was renewed within its duration: the kubelet is alive and may still run the
    /// VMs, so force-deleting their pods risks two copies of one VM.
    pub lease_renewing: bool,
    /// Why a Ready node is nevertheless unable to run or migrate VMs (virt-handler silent or
    /// not schedulable), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stuck: Option<String>,
}

impl NodeAssessment {
    /// Whether live migration is out of the question: the node is not Ready, or it is Ready
    /// but KubeVirt on it does not answer (the migration source must take part).
    #[must_use]
    pub fn needs_fencing(&self) -> bool {
        self.state != NodeState::Ready || self.stuck.is_some()
    }
}

/// Assesses `node` at `now`, with its kubelet `lease` if there is one.
#[must_use]
pub fn assess_node(node: &Node, lease: Option<&Lease>, now: Timestamp) -> NodeAssessment {
    let state = node_state(node);
    let kubevirt_heartbeat_seconds = kubevirt_heartbeat(node).map(|t| age_seconds(now, t));
    let schedulable = label(node, SCHEDULABLE_LABEL);
    NodeAssessment {
        state,
        last_heartbeat_seconds: ready_heartbeat(node).map(|t| age_seconds(now, t)),
        lease_renewed_seconds: lease_renew_time(lease).map(|t| age_seconds(now, t)),
        lease_renew_time: lease_renew_time(lease).map(|t| t.to_string()),
        stuck: stuck_reason(state, kubevirt_heartbeat_seconds, schedulable.as_deref()),
        kubevirt_heartbeat_seconds,
        schedulable,
        cordoned: node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true),
        out_of_service: has_taint(node, OUT_OF_SERVICE_TAINT),
        lease_renewing: lease_renewing(lease, now),
    }
}

/// Whole seconds from `then` to `now`; 0 when `then` is ahead (clock skew).
#[must_use]
pub fn age_seconds(now: Timestamp, then: Timestamp) -> u64 {
    u64::try_from(now.as_second().saturating_sub(then.as_second())).unwrap_or(0)
}

fn ready_condition(node: &Node) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
}

fn node_state(node: &Node) -> NodeState {
    match ready_condition(node).map(|c| c.status.as_str()) {
        Some("True") => NodeState::Ready,
        Some("False") => NodeState::NotReady,
        _ => NodeState::Unknown,
    }
}

fn ready_heartbeat(node: &Node) -> Option<Timestamp> {
    ready_condition(node)
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0)
}

fn kubevirt_heartbeat(node: &Node) -> Option<Timestamp> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HEARTBEAT_ANNOTATION))
        .and_then(|v| v.parse().ok())
}

fn label(node: &Node, key: &str) -> Option<String> {
    node.metadata.labels.as_ref().and_then(|l| l.get(key)).cloned()
}

fn has_taint(node: &Node, key: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key))
}

/// The `renewTime` of `lease`, if it has one.
#[must_use]
pub fn lease_renew_time(lease: Option<&Lease>) -> Option<Timestamp> {
    lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0)
}

fn lease_renewing(lease: Option<&Lease>, now: Timestamp) -> bool {
    let duration = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.lease_duration_seconds)
        .and_then(|d| u64::try_from(d).ok())
        .unwrap_or(DEFAULT_LEASE_DURATION_SECONDS);
    lease_renew_time(lease).is_some_and(|t| age_seconds(now, t) <= duration)
}

/// Why a Ready node cannot take part in a migration, in words; `None` when it can (or when it is
/// not Ready, which says enough).
fn stuck_reason(state: NodeState, heartbeat_age: Option<u64>, schedulable: Option<&str>) -> Option<String> {
    if state != NodeState::Ready {
        return None;
    }
    if let Some(age) = heartbeat_age.filter(|age| *age > HEARTBEAT_TIMEOUT_SECONDS) {
        return Some(format!(
            "Ready, but virt-handler's heartbeat ({HEARTBEAT_ANNOTATION}) is {age} s old; \
             KubeVirt treats the node as unresponsive after {HEARTBEAT_TIMEOUT_SECONDS} s"
        ));
    }
    (schedulable == Some("false")).then(|| {
        format!("Ready, but {SCHEDULABLE_LABEL}=false: virt-handler is not running there or not ready")
    })
}

/// The kubelet Lease of `node` in `leases`, if any.
#[must_use]
pub fn node_lease<'a>(leases: &'a [Lease], node: &str) -> Option<&'a Lease> {
    leases.iter().find(|l| {
        l.metadata.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE)
            && l.metadata.name.as_deref() == Some(node)
    })
}
