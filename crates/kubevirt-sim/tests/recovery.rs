//! What `kubectl vm-recover` works against: PVCs provisioned and bound, RWO volumes
//! attached through VolumeAttachments and pinned to a dead node (the replacement pod waits
//! with a Multi-Attach error until the attachment is released), and the run history that
//! shows whether a VM ever ran twice at once. Needs the binaries from
//! `scripts/install-control-plane` (fails without them).

mod common;
use common::wait_for;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kubevirt_sim::crds::kubevirt_resource;
use kubevirt_sim::history::{self, StopReason};
use kubevirt_sim::storage::DRIVER;
use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

struct Env {
    sandbox: Sandbox,
    vmis: Api<DynamicObject>,
    pods: Api<Pod>,
    pvcs: Api<PersistentVolumeClaim>,
    attachments: Api<VolumeAttachment>,
}

impl Env {
    /// A sandbox with a VM `name` whose disk is a PVC `claim` with access `mode`, once the
    /// VM runs: the environment, the running VMI, and the PV bound to the claim.
    async fn with_vm(name: &str, claim: &str, mode: &str) -> (Env, Value, String) {
        let env = Env::start().await;
        env.create_vm_with_claim(name, claim, mode).await;
        let vmi = env.running(name, None).await;
        let pv = env.bound_pv(claim).await;
        (env, vmi, pv)
    }

    async fn start() -> Env {
        let mut config = SandboxConfig::with_nodes(2);
        config.control_plane.node_monitor_grace_period = Duration::from_secs(6);
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        let c = sandbox.client();
        Env {
            vmis: Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachineInstance")),
            pods: Api::namespaced(c.clone(), "default"),
            pvcs: Api::namespaced(c.clone(), "default"),
            attachments: Api::all(c),
            sandbox,
        }
    }

    /// A PVC `claim` and a VM `name` (runStrategy Always) whose disk it is.
    async fn create_vm_with_claim(&self, name: &str, claim: &str, mode: &str) {
        let pvc = serde_json::from_value(json!({"metadata": {"name": claim},
            "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "10Gi"}}}}))
        .unwrap();
        self.pvcs.create(&PostParams::default(), &pvc).await.unwrap();
        let disk = json!([{"name": "disk", "persistentVolumeClaim": {"claimName": claim}}]);
        common::create_vm(self.sandbox.client(), name, disk).await;
    }

    async fn vmi(&self, name: &str) -> Option<Value> {
        let v = self.vmis.get_opt(name).await.ok()??;
        serde_json::to_value(v).ok()
    }

    /// The VMI `name` once Running (and not the one with UID `not_uid`).
    async fn running(&self, name: &str, not_uid: Option<&str>) -> Value {
        common::running_vmi(&self.vmis, name, not_uid).await
    }

    /// The launcher pods of a VMI.
    async fn launchers(&self, vmi: &Value) -> Vec<Pod> {
        let uid = vmi["metadata"]["uid"].as_str().unwrap();
        self.pods
            .list(&ListParams::default().labels(&format!("kubevirt.io/created-by={uid}")))
            .await
            .unwrap()
            .items
    }

    /// The VolumeAttachments of a PV, as (node, attached, name).
    async fn attachments_of(&self, pv: &str) -> Vec<(String, bool, String)> {
        let mut out: Vec<(String, bool, String)> = self
            .attachments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|va| va.spec.source.persistent_volume_name.as_deref() == Some(pv))
            .map(|va| {
                (
                    va.spec.node_name.clone(),
                    va.status.as_ref().is_some_and(|s| s.attached),
                    va.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        out.sort();
        out
    }

    async fn bound_pv(&self, claim: &str) -> String {
        wait_for(
            &format!("PVC {claim} to be Bound"),
            Duration::from_secs(30),
            || async {
                let pvc = self.pvcs.get(claim).await.ok()?;
                let bound = pvc.status.as_ref()?.phase.as_deref() == Some("Bound");
                bound.then(|| pvc.spec?.volume_name).flatten()
            },
        )
        .await
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rwo_disk_is_pinned_to_a_dead_node_until_its_attachment_is_released() {
    // (a) Provisioned, bound, attached to the VM's node before its pod ran.
    let (env, first, pv_name) = Env::with_vm("db", "db-data", "ReadWriteOnce").await;
    let first_uid = first["metadata"]["uid"].as_str().unwrap().to_string();
    let node = first["status"]["nodeName"].as_str().unwrap().to_string();
    let other = if node == "node-1" { "node-2" } else { "node-1" };
    let pvs: Api<PersistentVolume> = Api::all(env.sandbox.client());
    let pv = pvs.get(&pv_name).await.unwrap();
    let pv_spec = pv.spec.unwrap();
    assert_eq!(
        pv_spec.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
    assert_eq!(pv_spec.capacity.unwrap()["storage"].0, "10Gi");
    assert_eq!(pv.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
    let old_pod = env.launchers(&first).await.remove(0);
    let mounts = old_pod.spec.as_ref().unwrap().volumes.as_ref().unwrap();
    assert!(
        mounts.iter().any(|v| v
            .persistent_volume_claim
            .as_ref()
            .is_some_and(|c| c.claim_name == "db-data")),
        "the launcher pod mounts the claim"
    );
    let vas = env.attachments.list(&ListParams::default()).await.unwrap().items;
    let [va] = vas.as_slice() else {
        panic!("one VolumeAttachment expected: {vas:?}")
    };
    assert_eq!(va.spec.attacher, DRIVER);
    assert_eq!(va.spec.node_name, node);
    assert_eq!(
        va.spec.source.persistent_volume_name.as_deref(),
        Some(pv_name.as_str())
    );
    assert!(va.status.as_ref().is_some_and(|s| s.attached));
    let old_va = va.metadata.name.clone().unwrap();

    // (b) The node dies; once the real controller manager has marked it NotReady (so
    // nothing new lands there), the launcher pod is force-deleted.
    env.sandbox.node_down(&node).unwrap();
    let nodes: Api<Node> = Api::all(env.sandbox.client());
    wait_for(
        "the node to be tainted unreachable",
        Duration::from_secs(80),
        || async {
            let n = nodes.get(&node).await.ok()?;
            n.spec?
                .taints?
                .iter()
                .any(|t| t.key == "node.kubernetes.io/unreachable")
                .then_some(())
        },
    )
    .await;
    common::force_delete(&env.pods, old_pod.metadata.name.as_deref().unwrap()).await;
    let (second, new_pod) = wait_for(
        "a new VMI whose pod is scheduled on the other node",
        Duration::from_secs(60),
        || async {
            let v = env.vmi("db").await?;
            if v["metadata"]["uid"] == first_uid.as_str() {
                return None;
            }
            let pod = env.launchers(&v).await.into_iter().next()?;
            let placed = pod.spec.as_ref()?.node_name.clone()?;
            (placed == other).then_some((v, pod))
        },
    )
    .await;
    let new_pod_name = new_pod.metadata.name.clone().unwrap();
    let events: Api<Event> = Api::namespaced(env.sandbox.client(), "default");
    let event = wait_for("the Multi-Attach event", Duration::from_secs(30), || async {
        events
            .list(&ListParams::default().fields(&format!("involvedObject.name={new_pod_name}")))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedAttachVolume"))
    })
    .await;
    assert_eq!(
        event.message.as_deref(),
        Some(
            format!(
                "Multi-Attach error for volume \"{pv_name}\" Volume is already exclusively attached to one node and can't be attached to another"
            )
            .as_str()
        )
    );
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    // Held there: the pod does not run while the old attachment exists.
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(6) {
        let pod = env.pods.get(&new_pod_name).await.unwrap();
        assert_eq!(phase(&pod), "Pending", "the new pod must not run");
        let v = env.vmi("db").await.unwrap();
        assert_ne!(v["status"]["phase"], "Running", "the new VMI must not run");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let waiting = env.pods.get(&new_pod_name).await.unwrap();
    let reason = waiting
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c[0].state.as_ref()?.waiting.as_ref()?.reason.clone());
    assert_eq!(reason.as_deref(), Some("ContainerCreating"));
    assert_eq!(
        env.attachments_of(&pv_name).await,
        vec![(node.clone(), true, old_va.clone())],
        "pinned to the dead node, nothing attached to the other"
    );

    // Releasing the attachment (as vm-recover does) lets the VM run on the other node.
    env.attachments
        .delete(&old_va, &DeleteParams::default())
        .await
        .unwrap();
    let second_uid = second["metadata"]["uid"].as_str().unwrap();
    let running = env.running("db", Some(first_uid.as_str())).await;
    assert_eq!(running["metadata"]["uid"], second_uid);
    assert_eq!(running["status"]["nodeName"], other);
    let vas = env.attachments_of(&pv_name).await;
    assert!(matches!(vas.as_slice(), [(n, true, _)] if n == other), "{vas:?}");

    // (c) The run history: the first pod ran until its node went down, then the second.
    let runs: Vec<history::Run> = history::read(env.sandbox.state_dir())
        .into_iter()
        .filter(|r| r.vmi == "db")
        .collect();
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(
        (runs[0].pod.as_str(), runs[0].node.as_str(), runs[0].stop_reason),
        (
            old_pod.metadata.name.as_deref().unwrap(),
            node.as_str(),
            Some(StopReason::NodeDown)
        )
    );
    assert_eq!(
        (runs[1].pod.as_str(), runs[1].node.as_str(), runs[1].stopped),
        (new_pod_name.as_str(), other, None)
    );
    assert!(runs[0].stopped.unwrap() <= runs[1].started);
    assert!(history::overlapping_runs(&runs).is_empty());
    let events = history::read_events(env.sandbox.state_dir());
    assert_eq!(events.iter().filter(|e| e.vmi == "db").count(), 3, "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_migration_overlaps_source_and_target_without_counting_as_two_copies() {
    let (env, vmi, pv) = Env::with_vm("web", "web-data", "ReadWriteMany").await;
    let source = vmi["status"]["nodeName"].as_str().unwrap().to_string();
    let vmims: Api<DynamicObject> = Api::namespaced_with(
        env.sandbox.client(),
        "default",
        &kubevirt_resource("VirtualMachineInstanceMigration"),
    );
    let m: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": "move-web", "namespace": "default"},
        "spec": {"vmiName": "web"},
    }))
    .unwrap();
    vmims.create(&PostParams::default(), &m).await.unwrap();
    let target = wait_for("the migration to succeed", Duration::from_secs(90), || async {
        let v = env.vmi("web").await?;
        let node = v["status"]["nodeName"].as_str()?.to_string();
        let m = vmims.get("move-web").await.ok()?;
        (m.data["status"]["phase"] == "Succeeded" && node != source).then_some(node)
    })
    .await;
    // A shared volume is attached to both nodes during the migration, then only to the
    // target once the source pod has completed.
    wait_for(
        "the source attachment to be detached",
        Duration::from_secs(30),
        || async {
            let vas = env.attachments_of(&pv).await;
            matches!(vas.as_slice(), [(n, true, _)] if *n == target).then_some(())
        },
    )
    .await;
    let runs = wait_for("the source run to stop", Duration::from_secs(30), || async {
        let runs = history::read(env.sandbox.state_dir());
        (runs.len() == 2 && runs[0].stopped.is_some()).then_some(runs)
    })
    .await;
    assert_eq!(runs[0].node, source);
    assert_eq!(runs[0].stop_reason, Some(StopReason::Completed));
    assert_eq!(runs[1].node, target);
    assert!(runs[1].migration_job_uid.is_some());
    assert_eq!(runs[0].vmi_uid, runs[1].vmi_uid);
    assert!(
        runs[0].overlaps(&runs[1]),
        "source and target ran together: {runs:#?}"
    );
    assert!(history::overlapping_runs(&runs).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_powered_back_on_does_not_resume_its_guests() {
    let (env, first, pv) = Env::with_vm("app", "app-data", "ReadWriteOnce").await;
    let first_uid = first["metadata"]["uid"].as_str().unwrap().to_string();
    let node = first["status"]["nodeName"].as_str().unwrap().to_string();
    let old_pod = env.launchers(&first).await.remove(0);
    let old_name = old_pod.metadata.name.clone().unwrap();
    env.sandbox.node_down(&node).unwrap();
    wait_for(
        "the guest to be recorded stopped",
        Duration::from_secs(20),
        || async {
            let runs = history::read(env.sandbox.state_dir());
            (runs.len() == 1 && runs[0].stop_reason == Some(StopReason::NodeDown)).then_some(())
        },
    )
    .await;
    assert_eq!(
        phase(&env.pods.get(&old_name).await.unwrap()),
        "Running",
        "as last reported"
    );

    // A reboot: the pod's containers are gone for good (restartPolicy Never).
    env.sandbox.node_up(&node).unwrap();
    let failed = wait_for("the old pod to fail", Duration::from_secs(30), || async {
        let p = env.pods.get_opt(&old_name).await.ok()?;
        // Gone is fine too: the VMI, once Failed, deletes its pods.
        p.is_none_or(|p| phase(&p) == "Failed").then_some(())
    });
    failed.await;
    let second = env.running("app", Some(first_uid.as_str())).await;
    let new_node = second["status"]["nodeName"].as_str().unwrap();
    let vas = env.attachments_of(&pv).await;
    assert!(
        matches!(vas.as_slice(), [(n, true, _)] if n == new_node),
        "attached where the VM runs now: {vas:?}"
    );
    let runs = history::read(env.sandbox.state_dir());
    assert_eq!(runs.len(), 2, "the old pod never ran again: {runs:#?}");
    assert_eq!(runs[0].pod, old_name);
    assert_eq!(runs[1].vmi_uid, second["metadata"]["uid"].as_str().unwrap());
    assert!(history::overlapping_runs(&runs).is_empty());
}
