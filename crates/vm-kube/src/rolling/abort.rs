//! `--abort`: ends a round cleanly. Every node the round cordoned is uncordoned and the VMs
//! its drains stopped are restarted (the `--uncordon` code, under each node's lock), the
//! steering labels are removed, and the state is marked aborted for `--status`. It takes the
//! round's lock first, so it never undoes a run that is still working: that run is stopped
//! first (Ctrl-C), or its lock expires.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::{Api, Client};

use super::state::{self, Phase, RoundStatus};
use super::steer;
use crate::drain::lease::{self, Lock};
use crate::drain::{DrainError, UncordonReport, uncordon};

/// What `--abort` did for one node.
#[derive(Debug)]
pub struct AbortedNode {
    /// The node.
    pub node: String,
    /// Where the round had left it.
    pub phase: Phase,
    /// What its uncordon did.
    pub uncordon: UncordonReport,
}

/// Aborts the round recorded in `lock_namespace`, as `holder`.
///
/// # Errors
/// No open round; the round's lock held by a live run; API errors.
pub async fn abort(
    client: &Client,
    lock_namespace: &str,
    holder: &str,
) -> Result<Vec<AbortedNode>, DrainError> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), lock_namespace);
    let Some(stored) = state::load(&configmaps, lock_namespace).await? else {
        return Err(DrainError::Other(
            "no rolling round was ever recorded here: nothing to abort".into(),
        ));
    };
    if !stored.state.is_open() {
        return Err(DrainError::Other(format!(
            "the last rolling round ({}) is {}: nothing to abort",
            stored.state.nodes().join(", "),
            if stored.state.status == RoundStatus::Done {
                "done"
            } else {
                "already aborted"
            }
        )));
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), lock_namespace);
    let lock = Lock::round();
    lease::acquire_lock(&leases, lock_namespace, &lock, holder).await?;
    let result = undo(client, &configmaps, lock_namespace, stored, holder).await;
    lease::release_lock_if_held(&leases, lock_namespace, &lock, holder).await?;
    result
}

async fn undo(
    client: &Client,
    configmaps: &Api<ConfigMap>,
    ns: &str,
    mut stored: state::Stored,
    holder: &str,
) -> Result<Vec<AbortedNode>, DrainError> {
    let mut done = Vec::new();
    let touched: Vec<(String, Phase)> = stored
        .state
        .steps
        .iter()
        .filter(|s| (Phase::Draining..=Phase::Maintained).contains(&s.phase))
        .map(|s| (s.node.clone(), s.phase))
        .collect();
    for (node, phase) in touched {
        let report = uncordon(client, &node, ns, holder).await?;
        let mut st = stored.state.clone();
        if let Some(step) = st.steps.iter_mut().find(|s| s.node == node) {
            step.note = Some(format!("aborted while {}: uncordoned", phase.word()));
        }
        stored = state::save(configmaps, ns, Some(&stored), &st).await?;
        done.push(AbortedNode {
            node,
            phase,
            uncordon: report,
        });
    }
    let nodes: Api<Node> = Api::all(client.clone());
    steer::clear(&nodes).await?;
    let mut st = stored.state.clone();
    st.status = RoundStatus::Aborted;
    st.message = Some(format!("aborted by {holder}"));
    state::save(configmaps, ns, Some(&stored), &st).await?;
    Ok(done)
}
