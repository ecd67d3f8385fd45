//! Simulated live migration on the real control plane: the phase walk, the target pod
//! placed by the real scheduler away from the source node, the parallel limits, and the
//! failures KubeVirt reports. Needs the binaries from `scripts/install-control-plane`.

mod common;
use common::wait_for;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kubevirt_sim::crds::kubevirt_resource;
use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

struct Env {
    sandbox: Sandbox,
    vms: Api<DynamicObject>,
    vmis: Api<DynamicObject>,
    vmims: Api<DynamicObject>,
    nodes: Api<Node>,
    pods: Api<Pod>,
}

impl Env {
    async fn start(config: SandboxConfig) -> Env {
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        let c = sandbox.client();
        Env {
            vms: Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachine")),
            vmis: Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachineInstance")),
            vmims: Api::namespaced_with(
                c.clone(),
                "default",
                &kubevirt_resource("VirtualMachineInstanceMigration"),
            ),
            nodes: Api::all(c.clone()),
            pods: Api::namespaced(c, "default"),
            sandbox,
        }
    }

    async fn cordon(&self, node: &str, on: bool) {
        self.nodes
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": on}})),
            )
            .await
            .unwrap();
    }

    async fn create_vm(&self, name: &str, extra_volumes: Vec<Value>) {
        let mut volumes =
            vec![json!({"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}})];
        volumes.extend(extra_volumes);
        let vm: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"runStrategy": "Always", "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "evictionStrategy": "LiveMigrate",
                "domain": {"resources": {"requests": {"memory": "2Gi"}}, "devices": {"interfaces": [{"name": "default", "masquerade": {}}]}},
                "networks": [{"name": "default", "pod": {}}],
                "volumes": volumes,
            }}},
        }))
        .unwrap();
        self.vms.create(&PostParams::default(), &vm).await.unwrap();
    }

    async fn vmi(&self, name: &str) -> Value {
        serde_json::to_value(self.vmis.get(name).await.unwrap()).unwrap()
    }

    async fn running(&self, name: &str) -> Value {
        wait_for(
            &format!("VMI {name} Running"),
            Duration::from_secs(80),
            || async {
                let v = serde_json::to_value(self.vmis.get_opt(name).await.ok()??).ok()?;
                (v["status"]["phase"] == "Running").then_some(v)
            },
        )
        .await
    }

    async fn migrate(&self, name: &str, vmi: &str) {
        let m: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"vmiName": vmi},
        }))
        .unwrap();
        self.vmims.create(&PostParams::default(), &m).await.unwrap();
    }

    async fn vmim(&self, name: &str) -> Value {
        serde_json::to_value(self.vmims.get(name).await.unwrap()).unwrap()
    }

    async fn final_vmim(&self, name: &str, timeout: Duration) -> Value {
        wait_for(&format!("migration {name} to finish"), timeout, || async {
            let m = serde_json::to_value(self.vmims.get(name).await.ok()?).ok()?;
            matches!(m["status"]["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(m)
        })
        .await
    }
}

fn phases(m: &Value) -> Vec<String> {
    m["status"]["phaseTransitionTimestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_walks_its_phases_and_moves_the_vmi() {
    let env = Env::start(SandboxConfig::with_nodes(2)).await;
    env.create_vm("app", vec![]).await;
    let before = env.running("app").await;
    let source = before["status"]["nodeName"].as_str().unwrap().to_string();
    let source_pod = env
        .pods
        .list(&ListParams::default().labels("kubevirt.io=virt-launcher"))
        .await
        .unwrap()
        .items[0]
        .clone();
    env.migrate("move-app", "app").await;
    let m = env.final_vmim("move-app", Duration::from_secs(120)).await;
    assert_eq!(m["status"]["phase"], "Succeeded", "{m:#}");
    assert_eq!(
        phases(&m),
        [
            "Pending",
            "Scheduling",
            "Scheduled",
            "PreparingTarget",
            "TargetReady",
            "Running",
            "Succeeded"
        ]
    );
    assert_eq!(m["metadata"]["labels"]["kubevirt.io/vmi-name"], "app");
    let after = env.vmi("app").await;
    let target = after["status"]["nodeName"].as_str().unwrap();
    assert_ne!(
        target, source,
        "the real scheduler placed the target away from the source"
    );
    assert_eq!(after["metadata"]["labels"]["kubevirt.io/nodeName"], target);
    assert!(
        after["metadata"]["labels"]
            .get("kubevirt.io/migrationTargetNodeName")
            .is_none()
    );
    let state = &after["status"]["migrationState"];
    assert_eq!(
        (
            state["completed"].as_bool(),
            state["sourceNode"].as_str(),
            state["targetNode"].as_str()
        ),
        (Some(true), Some(source.as_str()), Some(target))
    );
    assert_eq!(after["status"]["phase"], "Running");
    let old = wait_for("the source pod to complete", Duration::from_secs(20), || async {
        let p = env
            .pods
            .get(source_pod.metadata.name.as_ref().unwrap())
            .await
            .ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Succeeded")).then_some(p)
    })
    .await;
    assert_eq!(old.spec.unwrap().node_name.as_deref(), Some(source.as_str()));
    let target_pod = env
        .pods
        .list(&ListParams::default().labels(&format!(
            "kubevirt.io/migrationJobUID={}",
            m["metadata"]["uid"].as_str().unwrap()
        )))
        .await
        .unwrap();
    assert_eq!(
        target_pod.items[0].spec.as_ref().unwrap().node_name.as_deref(),
        Some(target)
    );
    // The VM is running again on the new node.
    let vm = serde_json::to_value(env.vms.get("app").await.unwrap()).unwrap();
    assert_eq!(vm["status"]["printableStatus"], "Running");
    drop(env.sandbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_migrations_per_node_are_limited_and_extra_ones_wait_in_pending() {
    let mut config = SandboxConfig::with_nodes(3);
    config.sim.migration_base_ms = 5_000;
    let env = Env::start(config).await;
    env.cordon("node-2", true).await;
    env.cordon("node-3", true).await;
    for i in 1..=4 {
        env.create_vm(&format!("vm-{i}"), vec![]).await;
    }
    for i in 1..=4 {
        assert_eq!(
            env.running(&format!("vm-{i}")).await["status"]["nodeName"],
            "node-1"
        );
    }
    env.cordon("node-2", false).await;
    env.cordon("node-3", false).await;
    for i in 1..=4 {
        env.migrate(&format!("mig-{i}"), &format!("vm-{i}")).await;
    }
    let mut max_active = 0;
    let mut saw_waiting = false;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let list = env.vmims.list(&ListParams::default()).await.unwrap();
        let ph: Vec<String> = list
            .items
            .iter()
            .map(|m| m.data["status"]["phase"].as_str().unwrap_or("").to_string())
            .collect();
        let active = ph
            .iter()
            .filter(|p| {
                matches!(
                    p.as_str(),
                    "Scheduling" | "Scheduled" | "PreparingTarget" | "TargetReady" | "Running"
                )
            })
            .count();
        let pending = ph.iter().filter(|p| p.as_str() == "Pending").count();
        max_active = max_active.max(active);
        saw_waiting |= active == 2 && pending == 2;
        if ph.iter().all(|p| p == "Succeeded") {
            break;
        }
        if Instant::now() > deadline {
            let pods = env.pods.list(&ListParams::default()).await.unwrap();
            let pods: Vec<_> = pods
                .items
                .iter()
                .map(|p| {
                    (
                        p.metadata.name.clone(),
                        p.spec.as_ref().unwrap().node_name.clone(),
                        p.status.as_ref().unwrap().phase.clone(),
                        p.status.as_ref().unwrap().conditions.clone(),
                    )
                })
                .collect();
            let vmis = env.vmis.list(&ListParams::default()).await.unwrap();
            let vmis: Vec<_> = vmis
                .items
                .iter()
                .map(|v| {
                    (
                        v.metadata.name.clone(),
                        v.data["status"]["phase"].clone(),
                        v.data["status"]["migrationState"].clone(),
                    )
                })
                .collect();
            panic!(
                "migrations did not finish: {ph:?}\n{:#?}\npods {pods:#?}\nvmis {vmis:#?}",
                list.items
                    .iter()
                    .map(|m| m.data["status"].clone())
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(max_active, 2, "parallelOutboundMigrationsPerNode defaults to 2");
    assert!(saw_waiting, "two migrations waited in Pending while two ran");
    for i in 1..=4 {
        assert_ne!(env.vmi(&format!("vm-{i}")).await["status"]["nodeName"], "node-1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_fail_when_the_target_cannot_be_scheduled_or_the_vmi_is_not_migratable() {
    let mut config = SandboxConfig::with_nodes(2);
    config.sim.migration_unschedulable_timeout_ms = 4_000;
    let env = Env::start(config).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.sandbox.client(), "default");
    let pvc = serde_json::from_value(json!({"metadata": {"name": "disk"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})).unwrap();
    pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    env.create_vm(
        "pinned",
        vec![json!({"name": "data", "persistentVolumeClaim": {"claimName": "disk"}})],
    )
    .await;
    env.create_vm("free", vec![]).await;
    env.running("pinned").await;
    let free = env.running("free").await;
    env.migrate("mig-pinned", "pinned").await;
    let m = env.final_vmim("mig-pinned", Duration::from_secs(40)).await;
    assert_eq!(m["status"]["phase"], "Failed");
    let reason = m["status"]["conditions"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("Cannot migrate VMI, Reason: DisksNotLiveMigratable"),
        "{reason}"
    );

    // Only the source node is schedulable: the target pod stays Pending, then the migration fails.
    let source = free["status"]["nodeName"].as_str().unwrap();
    let other = if source == "node-1" { "node-2" } else { "node-1" };
    env.cordon(other, true).await;
    env.migrate("mig-free", "free").await;
    let m = env.final_vmim("mig-free", Duration::from_secs(80)).await;
    assert_eq!(m["status"]["phase"], "Failed", "{m:#}");
    let after = env.vmi("free").await;
    assert_eq!(after["status"]["phase"], "Running");
    assert_eq!(after["status"]["nodeName"], source, "the VMI stays where it was");
    let target_pods = env
        .pods
        .list(&ListParams::default().labels(&format!(
            "kubevirt.io/migrationJobUID={}",
            env.vmim("mig-free").await["metadata"]["uid"].as_str().unwrap()
        )))
        .await
        .unwrap();
    assert!(
        target_pods
            .items
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some()),
        "the unschedulable target pod is deleted"
    );
}
