//! `kubectl drain` (the real kubectl) against the sandbox: virt-api's eviction webhook and
//! the evacuation controller must make it behave as on a real KubeVirt cluster.
//! Needs the binaries from `scripts/install-control-plane` and kubectl on PATH.

mod common;
use common::wait_for;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kubevirt_sim::crds::kubevirt_resource;
use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

async fn cordon(nodes: &Api<Node>, node: &str, on: bool) {
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": on}})),
        )
        .await
        .unwrap();
}

fn vm(name: &str, volumes: Vec<Value>) -> DynamicObject {
    let mut all =
        vec![json!({"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}})];
    all.extend(volumes);
    serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "evictionStrategy": "LiveMigrate",
            "domain": {"resources": {"requests": {"memory": "1Gi"}}, "devices": {"interfaces": [{"name": "default", "masquerade": {}}]}},
            "networks": [{"name": "default", "pod": {}}],
            "volumes": all,
        }}},
    }))
    .unwrap()
}

/// Starts VMs on node-1 only (the other nodes cordoned meanwhile).
async fn vms_on_node_1(sandbox: &Sandbox, vms: Vec<DynamicObject>) {
    let nodes: Api<Node> = Api::all(sandbox.client());
    let vm_api: Api<DynamicObject> =
        Api::namespaced_with(sandbox.client(), "default", &kubevirt_resource("VirtualMachine"));
    let vmis: Api<DynamicObject> = Api::namespaced_with(
        sandbox.client(),
        "default",
        &kubevirt_resource("VirtualMachineInstance"),
    );
    cordon(&nodes, "node-2", true).await;
    cordon(&nodes, "node-3", true).await;
    let names: Vec<String> = vms.iter().map(|v| v.metadata.name.clone().unwrap()).collect();
    for v in vms {
        vm_api.create(&PostParams::default(), &v).await.unwrap();
    }
    for n in &names {
        wait_for(
            &format!("{n} running on node-1"),
            Duration::from_secs(80),
            || async {
                let v = vmis.get_opt(n).await.ok()??;
                (v.data["status"]["phase"] == "Running" && v.data["status"]["nodeName"] == "node-1")
                    .then_some(())
            },
        )
        .await;
    }
    cordon(&nodes, "node-2", false).await;
    cordon(&nodes, "node-3", false).await;
}

/// Runs the real `kubectl drain node-1` and returns (success, combined output).
async fn drain(sandbox: &Sandbox, timeout: &str) -> (bool, String) {
    let kubeconfig = sandbox.kubeconfig();
    let timeout = timeout.to_string();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "drain",
                "node-1",
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                &format!("--timeout={timeout}"),
            ])
            .output()
            .expect("kubectl runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_migrates_live_migrate_vms_off_the_node() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    vms_on_node_1(&sandbox, vec![vm("a", vec![]), vm("b", vec![])]).await;
    let (ok, output) = drain(&sandbox, "120s").await;
    assert!(ok, "drain failed:\n{output}");
    assert!(
        output.contains("Eviction triggered evacuation of VMI"),
        "the webhook answered 429 first:\n{output}"
    );
    assert!(output.contains("node/node-1 drained"), "{output}");
    let vmis: Api<DynamicObject> = Api::namespaced_with(
        sandbox.client(),
        "default",
        &kubevirt_resource("VirtualMachineInstance"),
    );
    for n in ["a", "b"] {
        let v = vmis.get(n).await.unwrap();
        assert_eq!(v.data["status"]["phase"], "Running");
        assert_ne!(v.data["status"]["nodeName"], "node-1", "{n} migrated away");
        assert!(
            v.data["status"]
                .get("evacuationNodeName")
                .is_none_or(Value::is_null),
            "mark cleared by the migration"
        );
    }
    let vmims: Api<DynamicObject> = Api::namespaced_with(
        sandbox.client(),
        "default",
        &kubevirt_resource("VirtualMachineInstanceMigration"),
    );
    let list = vmims.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    for m in &list.items {
        assert!(
            m.metadata
                .name
                .as_ref()
                .unwrap()
                .starts_with("kubevirt-evacuation-")
        );
        assert_eq!(
            m.metadata.annotations.as_ref().unwrap()["kubevirt.io/evacuationMigration"],
            "node-1"
        );
        assert_eq!(m.data["status"]["phase"], "Succeeded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_keeps_retrying_a_live_migrate_vm_that_cannot_migrate() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(sandbox.client(), "default");
    let pvc = serde_json::from_value(json!({"metadata": {"name": "local"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})).unwrap();
    pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    vms_on_node_1(
        &sandbox,
        vec![vm(
            "stuck",
            vec![json!({"name": "data", "persistentVolumeClaim": {"claimName": "local"}})],
        )],
    )
    .await;
    let (ok, output) = drain(&sandbox, "15s").await;
    assert!(!ok, "drain must not succeed:\n{output}");
    assert!(
        output.contains("is configured with an eviction strategy but is not live-migratable"),
        "{output}"
    );
    assert!(
        output.matches("will retry after 5s").count() >= 2,
        "kubectl retried on 429:\n{output}"
    );
    let vmis: Api<DynamicObject> = Api::namespaced_with(
        sandbox.client(),
        "default",
        &kubevirt_resource("VirtualMachineInstance"),
    );
    let v = vmis.get("stuck").await.unwrap();
    assert_eq!(
        (
            v.data["status"]["phase"].as_str(),
            v.data["status"]["nodeName"].as_str()
        ),
        (Some("Running"), Some("node-1"))
    );
}
