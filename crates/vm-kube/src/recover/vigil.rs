//! Signs of life from the node being fenced.
//!
//! The operator confirmed the node is off; the assessment saw its kubelet's Lease expired. If
//! the kubelet renews that Lease afterwards, the node is running again (or never stopped), and
//! the VMs on it may be running too: force-deleting their pods now would let KubeVirt start a
//! second copy elsewhere. So before each destructive step the recovery asks the [`Vigil`]
//! whether the Lease moved since the assessment, and stops if it did.

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use vm_core::recover::{NODE_LEASE_NAMESPACE, RecoveryPlan, lease_renew_time};

use crate::drain::DrainError;
use crate::drain::retry::transient;
use crate::error::{ApiError, Scope};

/// Watches one node's kubelet Lease for a renewal after the assessment.
pub struct Vigil {
    leases: Api<Lease>,
    node: String,
    /// The `renewTime` the assessment saw.
    seen: Option<String>,
    /// Off when the operator forced a recovery of a node whose Lease was still renewing
    /// (`--force`): they vouched for the node being off despite the Lease.
    active: bool,
}

impl Vigil {
    /// A vigil over `plan.node`, from the Lease renewal its assessment saw.
    #[must_use]
    pub fn new(client: &Client, plan: &RecoveryPlan) -> Self {
        Self {
            leases: Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
            node: plan.node.clone(),
            seen: plan.node_assessment.lease_renew_time.clone(),
            active: !plan.node_assessment.lease_renewing,
        }
    }

    /// The Lease's new `renewTime` when the kubelet renewed it since the assessment.
    ///
    /// # Errors
    /// Reading the Lease failed: the caller stops rather than act blind.
    pub async fn renewed_since_assessment(&self) -> Result<Option<String>, DrainError> {
        if !self.active {
            return Ok(None);
        }
        let what = format!("reading the kubelet Lease of node {}", self.node);
        let lease = transient(&what, || self.leases.get_opt(&self.node))
            .await
            .map_err(|e| {
                DrainError::Api(ApiError::from_kube(
                    e,
                    "get",
                    "leases.coordination.k8s.io",
                    Scope::Namespace(NODE_LEASE_NAMESPACE.to_string()),
                ))
            })?;
        let now = lease_renew_time(lease.as_ref()).map(|t| t.to_string());
        Ok(now.filter(|t| Some(t) != self.seen.as_ref()))
    }
}
