//! Sandbox tests on the real control plane: the simulated kubelets must make the real
//! kube-controller-manager and kube-scheduler behave as on a real cluster.
//!
//! They need the binaries from `scripts/install-control-plane`; without them they fail
//! (they never pass by not running).

mod common;
use common::wait_for;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kubevirt_sim::{Sandbox, SandboxConfig};

fn condition(node: &Node, type_: &str) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn has_taint(node: &Node, key: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == key))
}

fn test_pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "containers": [{"name": "main", "image": "registry.example/app:1", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
            "terminationGracePeriodSeconds": 30,
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_become_ready_with_leases_and_the_kubevirt_api() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let client = sandbox.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&Default::default()).await.unwrap();
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["node-1", "node-2", "node-3"]);
    for n in &list.items {
        assert_eq!(
            condition(n, "Ready").as_deref(),
            Some("True"),
            "node {:?}",
            n.metadata.name
        );
        assert!(
            !has_taint(n, "node.kubernetes.io/not-ready"),
            "the real controller manager lifted the not-ready taint"
        );
        let labels = n.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("kubevirt.io/schedulable").map(String::as_str),
            Some("true")
        );
        assert_eq!(labels.get("kubernetes.io/hostname"), n.metadata.name.as_ref());
        let capacity = n
            .status
            .as_ref()
            .and_then(|s| s.allocatable.clone())
            .unwrap_or_default();
        assert_eq!(capacity.get("cpu").map(|q| q.0.as_str()), Some("32"));
    }
    // Leases are renewed, not just created.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first = leases
        .get("node-1")
        .await
        .unwrap()
        .spec
        .unwrap()
        .renew_time
        .unwrap();
    wait_for("the node-1 lease to be renewed", Duration::from_secs(20), || {
        let leases = leases.clone();
        let first = first.clone();
        async move {
            let now = leases.get("node-1").await.ok()?.spec?.renew_time?;
            (now.0 > first.0).then_some(())
        }
    })
    .await;
    // The KubeVirt API is served, with the KubeVirt CR in namespace kubevirt.
    let vmis: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kubevirt_sim::crds::kubevirt_resource("VirtualMachineInstance"),
    );
    assert!(vmis.list(&Default::default()).await.unwrap().items.is_empty());
    let kv: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "kubevirt",
        &kubevirt_sim::crds::kubevirt_resource("KubeVirt"),
    );
    let cr = kv.get("kubevirt").await.unwrap();
    assert_eq!(cr.data["status"]["phase"], "Deployed");
    // The kubeconfig verifies the server with the API server's own CA.
    let text = std::fs::read_to_string(sandbox.kubeconfig()).unwrap();
    assert!(text.contains("certificate-authority-data:") && !text.contains("insecure-skip-tls-verify"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_pod_runs_and_its_deletion_completes() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(2))
        .await
        .expect("sandbox starts");
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    pods.create(&PostParams::default(), &test_pod("web"))
        .await
        .unwrap();
    let pod = wait_for(
        "the pod to be scheduled and Running",
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            async move {
                let p = pods.get("web").await.ok()?;
                let status = p.status.clone()?;
                (status.phase.as_deref() == Some("Running")).then_some(p)
            }
        },
    )
    .await;
    let node = pod
        .spec
        .as_ref()
        .unwrap()
        .node_name
        .clone()
        .expect("placed by the real scheduler");
    assert!(node.starts_with("node-"));
    let status = pod.status.unwrap();
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    let cs = status.container_statuses.unwrap();
    assert_eq!(cs.len(), 1);
    assert!(cs[0].ready && cs[0].state.as_ref().unwrap().running.is_some());
    assert!(status.pod_ip.is_some() && status.host_ip.is_some());

    // A graceful delete (30 s grace) is completed by the node's kubelet at once.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    wait_for("the deleted pod to be gone", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move { matches!(pods.get_opt("web").await, Ok(None)).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_down_makes_the_real_controller_manager_mark_it_not_ready() {
    let mut config = SandboxConfig::with_nodes(2);
    config.control_plane.node_monitor_grace_period = Duration::from_secs(6);
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let client = sandbox.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut pod = test_pod("pinned");
    pod.spec.as_mut().unwrap().node_name = Some("node-1".into());
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for("the pinned pod to run", Duration::from_secs(40), || {
        let pods = pods.clone();
        async move { (pods.get("pinned").await.ok()?.status?.phase.as_deref() == Some("Running")).then_some(()) }
    })
    .await;

    sandbox.node_down("node-1").unwrap();
    let started = Instant::now();
    let node = wait_for("node-1 to go NotReady", Duration::from_secs(80), || {
        let nodes = nodes.clone();
        async move {
            let n = nodes.get("node-1").await.ok()?;
            (condition(&n, "Ready").as_deref() == Some("Unknown")
                && has_taint(&n, "node.kubernetes.io/unreachable"))
            .then_some(n)
        }
    })
    .await;
    eprintln!("node-1 NotReady after {:?}", started.elapsed());
    let reason = node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.reason);
    assert_eq!(
        reason.as_deref(),
        Some("NodeStatusUnknown"),
        "set by the real node lifecycle controller"
    );
    let other = nodes.get("node-2").await.unwrap();
    assert_eq!(
        condition(&other, "Ready").as_deref(),
        Some("True"),
        "the other node keeps running"
    );

    // On a dead node a deleted pod stays Terminating: nobody confirms the deletion.
    pods.delete("pinned", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stuck = pods.get("pinned").await.expect("pod still there");
    assert!(stuck.metadata.deletion_timestamp.is_some());

    // Back up: Ready again, taint lifted, and the kubelet finishes the deletion.
    sandbox.node_up("node-1").unwrap();
    wait_for("node-1 to be Ready again", Duration::from_secs(60), || {
        let nodes = nodes.clone();
        async move {
            let n = nodes.get("node-1").await.ok()?;
            (condition(&n, "Ready").as_deref() == Some("True")
                && !has_taint(&n, "node.kubernetes.io/unreachable"))
            .then_some(())
        }
    })
    .await;
    wait_for("the pod's deletion to complete", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move { matches!(pods.get_opt("pinned").await, Ok(None)).then_some(()) }
    })
    .await;
}
