//! Why the VMs `vm-sandbox up` waits for cannot all run: the scheduler's message from a
//! launcher pod it could not place, and whether the numbers can fit at all (the requests of
//! the pods still waiting against what the nodes have left). When they cannot, waiting out
//! the timeout would only delay the same answer, so `up` says it at once.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::quantity::{bytes, format_bytes, format_millicores, millicores};

/// A launcher pod the scheduler has given up on for now (`PodScheduled=False`,
/// `Unschedulable`), with the scheduler's words.
pub fn unschedulable_message(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Pending") {
        return None;
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| c.message.clone().unwrap_or_default())
}

/// A resource the waiting pods need more of than all nodes have left, in a sentence: for
/// CPU, memory and the pod count, the sum over the unscheduled pods against the sum over the
/// schedulable nodes of allocatable less what their bound, unfinished pods request.
pub fn shortfall(nodes: &[Node], pods: &[Pod]) -> Option<String> {
    let schedulable: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable) != Some(true))
        .collect();
    let names: std::collections::HashSet<&str> = schedulable
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    let mut free: BTreeMap<&str, i128> = BTreeMap::new();
    for node in &schedulable {
        let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        for (name, amount) in [
            (
                "cpu",
                alloc.and_then(|a| a.get("cpu")).and_then(|q| millicores(&q.0)),
            ),
            (
                "memory",
                alloc.and_then(|a| a.get("memory")).and_then(|q| bytes(&q.0)),
            ),
            (
                "pods",
                alloc.and_then(|a| a.get("pods")).and_then(|q| q.0.parse().ok()),
            ),
        ] {
            *free.entry(name).or_default() += i128::from(amount.unwrap_or(0));
        }
    }
    let mut wanted: BTreeMap<&str, i128> = BTreeMap::new();
    let mut waiting = 0usize;
    for pod in pods.iter().filter(|p| !finished(p)) {
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let requests = requests(pod);
        match bound {
            Some(node) if names.contains(node) => {
                for (name, amount) in requests {
                    *free.entry(name).or_default() -= amount;
                }
            }
            Some(_) => {}
            None if is_launcher(pod) && unschedulable_message(pod).is_some() => {
                waiting += 1;
                for (name, amount) in requests {
                    *wanted.entry(name).or_default() += amount;
                }
            }
            None => {}
        }
    }
    let show = |name: &str, amount: i128| {
        let amount = u64::try_from(amount.max(0)).unwrap_or(u64::MAX);
        match name {
            "cpu" => format!("{} CPU", format_millicores(amount)),
            "memory" => format!("{} of memory", format_bytes(amount)),
            _ => format!("{amount} pod(s)"),
        }
    };
    wanted.iter().find_map(|(name, need)| {
        let have = free.get(name).copied().unwrap_or(0);
        (*need > have).then(|| {
            format!(
                "the {waiting} launcher pod(s) still unscheduled need {} in all, and the schedulable nodes have {} left",
                show(name, *need),
                show(name, have)
            )
        })
    })
}

fn is_launcher(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubevirt.io"))
        .is_some_and(|v| v == "virt-launcher")
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// CPU (millicores), memory (bytes) and one pod slot: the sum over the pod's containers, as
/// the scheduler adds them (init containers, which count only as a maximum, are left out).
fn requests(pod: &Pod) -> Vec<(&'static str, i128)> {
    let mut cpu = 0i128;
    let mut memory = 0i128;
    for container in pod.spec.iter().flat_map(|s| &s.containers) {
        let req = container.resources.as_ref().and_then(|r| r.requests.as_ref());
        cpu += i128::from(
            req.and_then(|r| r.get("cpu"))
                .and_then(|q| millicores(&q.0))
                .unwrap_or(0),
        );
        memory += i128::from(
            req.and_then(|r| r.get("memory"))
                .and_then(|q| bytes(&q.0))
                .unwrap_or(0),
        );
    }
    vec![("cpu", cpu), ("memory", memory), ("pods", 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str, memory: &str, pods: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}},
        }))
        .unwrap()
    }

    fn pod(node: Option<&str>, cpu: &str, memory: &str) -> Pod {
        let mut status = serde_json::json!({"phase": "Pending"});
        if node.is_none() {
            status["conditions"] = serde_json::json!([{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu.",
            }]);
        } else {
            status["phase"] = "Running".into();
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"kubevirt.io": "virt-launcher"}},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "compute", "resources": {"requests": {"cpu": cpu, "memory": memory}}}],
            },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn names_the_resource_that_cannot_fit() {
        let nodes = [node("node-1", "2", "8Gi", "110")];
        let pods = [
            pod(Some("node-1"), "1", "1Gi"),
            pod(None, "1", "1Gi"),
            pod(None, "1", "1Gi"),
        ];
        let why = shortfall(&nodes, &pods).expect("2 CPU asked, 1 left");
        assert!(
            why.contains("2 launcher pod(s)") && why.contains("2 CPU") && why.contains("1 CPU"),
            "{why}"
        );
        assert_eq!(
            unschedulable_message(&pods[1]).as_deref(),
            Some("0/1 nodes are available: 1 Insufficient cpu.")
        );
    }

    #[test]
    fn pods_that_fit_in_sum_are_not_a_shortfall() {
        // Room in sum: the pods wait for another reason (a selector, a taint), which the
        // scheduler's message says.
        let nodes = [node("node-1", "8", "8Gi", "110")];
        let pods = [pod(None, "1", "1Gi"), pod(None, "1", "1Gi")];
        assert_eq!(shortfall(&nodes, &pods), None);
        let full = [node("node-1", "8", "8Gi", "1")];
        assert!(shortfall(&full, &pods).unwrap().contains("2 pod(s)"));
    }
}
