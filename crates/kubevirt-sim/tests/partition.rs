//! A network partition (`Sandbox::partition` / `Sandbox::heal`): the node keeps running, so
//! its guests go on while its kubelet is cut off from the API. Force-deleting its launcher
//! pods and letting KubeVirt start the VMs elsewhere then leaves two copies of each running
//! until the node heals: the split-brain that the run history must show. A partition
//! healed with nothing deleted leaves the guests where they were. Needs the binaries from
//! `scripts/install-control-plane` (fails without them).

mod common;
use common::wait_for;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kubevirt_sim::crds::kubevirt_resource;
use kubevirt_sim::history::{self, EventKind, StopReason};
use kubevirt_sim::sandbox::node_is_ready;
use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

struct Env {
    sandbox: Sandbox,
    vmis: Api<DynamicObject>,
    pods: Api<Pod>,
    nodes: Api<Node>,
}

impl Env {
    /// A sandbox with `nodes` nodes and one VM (runStrategy Always) per name in `vms`, all
    /// running on node-1: the environment and the running VMIs, in the order of `vms`.
    async fn with_vms_on_node_1(nodes: usize, vms: &[&str]) -> (Env, Vec<Value>) {
        let mut config = SandboxConfig::with_nodes(nodes);
        config.control_plane.node_monitor_grace_period = Duration::from_secs(6);
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        let c = sandbox.client();
        let env = Env {
            vmis: Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachineInstance")),
            pods: Api::namespaced(c.clone(), "default"),
            nodes: Api::all(c),
            sandbox,
        };
        let others: Vec<String> = (2..=nodes).map(|i| format!("node-{i}")).collect();
        for n in &others {
            env.cordon(n, true).await;
        }
        for name in vms {
            common::create_vm(env.sandbox.client(), name, json!([])).await;
        }
        let mut running = Vec::new();
        for name in vms {
            let vmi = common::running_vmi(&env.vmis, name, None).await;
            assert_eq!(vmi["status"]["nodeName"], "node-1", "{vmi:#}");
            running.push(vmi);
        }
        for n in &others {
            env.cordon(n, false).await;
        }
        (env, running)
    }

    async fn cordon(&self, node: &str, on: bool) {
        let patch = json!({"spec": {"unschedulable": on}});
        self.nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// The launcher pod of a VMI.
    async fn launcher(&self, vmi: &Value) -> Pod {
        let uid = vmi["metadata"]["uid"].as_str().unwrap();
        let mut pods = self
            .pods
            .list(&ListParams::default().labels(&format!("kubevirt.io/created-by={uid}")))
            .await
            .unwrap()
            .items;
        assert_eq!(pods.len(), 1, "{pods:#?}");
        pods.remove(0)
    }

    /// The node's Ready condition status (`Unknown` once the node lifecycle controller has
    /// noticed that it went silent).
    async fn ready_status(&self, node: &str) -> Option<String> {
        let n = self.nodes.get(node).await.ok()?;
        n.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status)
    }

    /// Waits until the real node lifecycle controller has marked `node` NotReady and tainted
    /// it unreachable (nothing new is scheduled there any more).
    async fn wait_not_ready(&self, node: &str) {
        wait_for(
            &format!("{node} to be NotReady and tainted unreachable"),
            Duration::from_secs(80),
            || async {
                let ready = self.ready_status(node).await?;
                let n = self.nodes.get(node).await.ok()?;
                let tainted = n
                    .spec?
                    .taints?
                    .iter()
                    .any(|t| t.key == "node.kubernetes.io/unreachable");
                (ready != "True" && tainted).then_some(())
            },
        )
        .await;
    }

    async fn wait_ready(&self, node: &str) {
        wait_for(
            &format!("{node} to be Ready and untainted again"),
            Duration::from_secs(60),
            || async { node_is_ready(&self.nodes.get(node).await.ok()?).then_some(()) },
        )
        .await;
    }

    async fn lease_renewed(&self, node: &str) -> String {
        let leases: Api<Lease> = Api::namespaced(self.sandbox.client(), "kube-node-lease");
        let lease = leases.get(node).await.unwrap();
        serde_json::to_string(&lease.spec.unwrap().renew_time).unwrap()
    }

    /// The runs of the VM `name`.
    fn runs_of(&self, name: &str) -> Vec<history::Run> {
        history::read(self.sandbox.state_dir())
            .into_iter()
            .filter(|r| r.vmi == name)
            .collect()
    }
}

fn pod_ready(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_deleting_a_partitioned_nodes_pods_runs_two_copies_until_it_heals() {
    let names = ["db", "web"];
    let (env, first) = Env::with_vms_on_node_1(3, &names).await;
    let mut old_pods = Vec::new();
    for vmi in &first {
        old_pods.push(env.launcher(vmi).await.metadata.name.unwrap());
    }

    env.sandbox.partition("node-1").unwrap();
    env.wait_not_ready("node-1").await;
    // The guests still run: nothing stopped.
    for name in names {
        let runs = env.runs_of(name);
        assert!(
            matches!(runs.as_slice(), [r] if r.node == "node-1" && r.stopped.is_none()),
            "{runs:#?}"
        );
    }

    // What a careless recovery does: force-delete the pods of a node that is not really off.
    for pod in &old_pods {
        common::force_delete(&env.pods, pod).await;
    }
    let mut second = Vec::new();
    for (name, old) in names.iter().zip(&first) {
        let vmi = common::running_vmi(&env.vmis, name, old["metadata"]["uid"].as_str()).await;
        let node = vmi["status"]["nodeName"].as_str().unwrap().to_string();
        assert_ne!(node, "node-1", "{vmi:#}");
        second.push((vmi, node));
    }
    // The old copies are still running on node-1, their pods gone from the API.
    for (name, old_pod) in names.iter().zip(&old_pods) {
        assert!(env.pods.get_opt(old_pod).await.unwrap().is_none());
        let runs = env.runs_of(name);
        let old_run = runs.iter().find(|r| &r.pod == old_pod).unwrap();
        assert_eq!(old_run.stopped, None, "{runs:#?}");
    }

    // The network heals: node-1's kubelet learns the pods are gone and kills the guests.
    // (At the history's precision, milliseconds.)
    let healed: jiff::Timestamp = history::format_time(jiff::Timestamp::now()).parse().unwrap();
    env.sandbox.heal("node-1").unwrap();
    wait_for(
        "the old copies to be recorded stopped",
        Duration::from_secs(30),
        || async {
            let runs = history::read(env.sandbox.state_dir());
            old_pods
                .iter()
                .all(|p| runs.iter().any(|r| &r.pod == p && r.stopped.is_some()))
                .then_some(())
        },
    )
    .await;
    env.wait_ready("node-1").await;

    let runs = history::read(env.sandbox.state_dir());
    let overlaps = history::overlapping_runs(&runs);
    let mut named: Vec<&str> = overlaps.iter().map(|(a, _)| a.vmi.as_str()).collect();
    named.sort();
    assert_eq!(named, names, "one overlap per VM: {overlaps:#?}");
    for ((name, old_pod), (vmi, node)) in names.iter().zip(&old_pods).zip(&second) {
        let (old, new) = overlaps.iter().find(|(a, _)| a.vmi == *name).unwrap();
        assert_eq!(
            (old.pod.as_str(), old.node.as_str()),
            (old_pod.as_str(), "node-1")
        );
        assert_eq!(old.stop_reason, Some(StopReason::Deleted));
        assert!(old.stopped.unwrap() >= healed, "stopped at the heal: {old:#?}");
        assert_eq!(new.vmi_uid, vmi["metadata"]["uid"].as_str().unwrap());
        assert_eq!(&new.node, node);
        assert_eq!(new.stopped, None);
        assert!(new.started < old.stopped.unwrap(), "{old:#?} {new:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_healed_with_nothing_deleted_leaves_the_guests_running() {
    let (env, first) = Env::with_vms_on_node_1(2, &["app"]).await;
    let vmi_uid = first[0]["metadata"]["uid"].as_str().unwrap().to_string();
    let pod = env.launcher(&first[0]).await.metadata.name.unwrap();

    env.sandbox.partition("node-1").unwrap();
    env.wait_not_ready("node-1").await;
    // No Lease renewals while cut off.
    let renewed = env.lease_renewed("node-1").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(env.lease_renewed("node-1").await, renewed);
    let runs = env.runs_of("app");
    assert!(matches!(runs.as_slice(), [r] if r.stopped.is_none()), "{runs:#?}");

    env.sandbox.heal("node-1").unwrap();
    env.wait_ready("node-1").await;
    assert_ne!(env.lease_renewed("node-1").await, renewed);
    // The kubelet reports the pod again (the node lifecycle controller had set it NotReady).
    wait_for("the pod to be Ready again", Duration::from_secs(30), || async {
        let p = env.pods.get(&pod).await.ok()?;
        (pod_ready(&p) == Some("True")).then_some(())
    })
    .await;

    let vmi = serde_json::to_value(env.vmis.get("app").await.unwrap()).unwrap();
    assert_eq!(vmi["metadata"]["uid"], vmi_uid.as_str());
    assert_eq!(vmi["status"]["phase"], "Running");
    assert_eq!(vmi["status"]["nodeName"], "node-1");
    let p = env.pods.get(&pod).await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Running"));
    let events = history::read_events(env.sandbox.state_dir());
    assert!(
        events.iter().all(|e| e.event == EventKind::Started),
        "nothing stopped: {events:#?}"
    );
    let runs = history::read(env.sandbox.state_dir());
    assert!(
        matches!(runs.as_slice(), [r] if r.pod == pod && r.node == "node-1" && r.stopped.is_none()),
        "{runs:#?}"
    );
    assert!(history::overlapping_runs(&runs).is_empty());
}
