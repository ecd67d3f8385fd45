//! The sandbox's kube-apiserver stopped and started again mid-migration: the cluster's state
//! survives in etcd, and the simulated kubelets and KubeVirt resume by themselves (their
//! watches reconnect with kube-runtime's backoff). Needs the binaries from
//! `scripts/install-control-plane`.

mod common;
use common::wait_for;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DynamicObject, PostParams};
use kubevirt_sim::controlplane::ControlPlaneOptions;
use kubevirt_sim::crds::kubevirt_resource;
use kubevirt_sim::{Sandbox, SandboxConfig, SimConfig};
use serde_json::{Value, json};

fn vm(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "evictionStrategy": "LiveMigrate",
            "domain": {"resources": {"requests": {"memory": "1Gi"}}, "devices": {"interfaces": [{"name": "default", "masquerade": {}}]}},
            "networks": [{"name": "default", "pod": {}}],
        }}},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_started_before_an_api_server_restart_completes_and_new_vms_run_after_it() {
    let mut sandbox = Sandbox::start(SandboxConfig {
        // Long enough that the copy is still running when the API server goes down.
        sim: SimConfig {
            migration_base_ms: 12_000,
            ..SimConfig::default()
        },
        // As on real clusters: an outage of the API server alone does not make nodes NotReady.
        control_plane: ControlPlaneOptions {
            node_monitor_grace_period: Duration::from_secs(40),
            ..ControlPlaneOptions::default()
        },
        ..SandboxConfig::with_nodes(2)
    })
    .await
    .expect("sandbox starts");
    let c = sandbox.client();
    let vms: Api<DynamicObject> =
        Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachine"));
    let vmis: Api<DynamicObject> =
        Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachineInstance"));
    let vmims: Api<DynamicObject> = Api::namespaced_with(
        c.clone(),
        "default",
        &kubevirt_resource("VirtualMachineInstanceMigration"),
    );
    vms.create(&PostParams::default(), &vm("before")).await.unwrap();
    let running = common::running_vmi(&vmis, "before", None).await;
    let uid = running["metadata"]["uid"].as_str().unwrap().to_string();
    let source = running["status"]["nodeName"].as_str().unwrap().to_string();
    let m: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": "across-restart", "namespace": "default"},
        "spec": {"vmiName": "before"},
    }))
    .unwrap();
    vmims.create(&PostParams::default(), &m).await.unwrap();
    wait_for("the migration to run", Duration::from_secs(60), || async {
        let m = serde_json::to_value(vmims.get("across-restart").await.ok()?).ok()?;
        (m["status"]["phase"] == "Running").then_some(())
    })
    .await;

    let restarted_at = jiff::Timestamp::now();
    let outage = Instant::now();
    sandbox
        .restart_apiserver(Duration::from_secs(3))
        .await
        .expect("the API server starts again");
    assert!(outage.elapsed() >= Duration::from_secs(3));

    // The state survived, and the migration that was running completes.
    let after = wait_for("the migration to finish", Duration::from_secs(120), || async {
        let m = serde_json::to_value(vmims.get("across-restart").await.ok()?).ok()?;
        matches!(m["status"]["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(m)
    })
    .await;
    assert_eq!(after["status"]["phase"], "Succeeded", "{after:#}");
    let moved = serde_json::to_value(vmis.get("before").await.unwrap()).unwrap();
    assert_eq!(
        moved["metadata"]["uid"],
        Value::from(uid.as_str()),
        "the same VMI, never restarted"
    );
    assert_ne!(moved["status"]["nodeName"], Value::from(source.as_str()));
    assert_eq!(moved["status"]["phase"], "Running");

    // The simulated kubelets renew their Leases again, and a VM created now runs.
    let leases: Api<Lease> = Api::namespaced(c.clone(), "kube-node-lease");
    for node in ["node-1", "node-2"] {
        wait_for(
            &format!("the Lease of {node} to be renewed after the restart"),
            Duration::from_secs(60),
            || async {
                let renewed = leases.get(node).await.ok()?.spec?.renew_time?;
                (renewed.0 > restarted_at).then_some(())
            },
        )
        .await;
    }
    vms.create(&PostParams::default(), &vm("after")).await.unwrap();
    common::running_vmi(&vmis, "after", None).await;
    let nodes: Api<Node> = Api::all(c);
    for n in nodes.list(&Default::default()).await.unwrap() {
        assert!(
            kubevirt_sim::sandbox::node_is_ready(&n),
            "{:?} is Ready",
            n.metadata.name
        );
    }
    let runs = kubevirt_sim::history::read(sandbox.state_dir());
    assert!(
        kubevirt_sim::history::overlapping_runs(&runs).is_empty(),
        "{runs:#?}"
    );
}
