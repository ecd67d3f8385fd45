//! CPU-aware placement on the real scheduler: a host-model VM migrates only to nodes of its
//! source node's CPU vendor and host-model, and a VMI with dedicated CPUs and hugepages
//! requests what KubeVirt's renderer asks for. Needs the binaries from
//! `scripts/install-control-plane`.

mod common;
use common::{create_vm, running_vmi, wait_for};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kubevirt_sim::crds::kubevirt_resource;
use kubevirt_sim::nodes::{NodeTemplate, cpu_labels};
use kubevirt_sim::quantity;
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

async fn migrate(vmims: &Api<DynamicObject>, name: &str, vmi: &str) -> String {
    let m: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"vmiName": vmi},
    }))
    .unwrap();
    let m = vmims.create(&PostParams::default(), &m).await.unwrap();
    m.metadata.uid.unwrap()
}

async fn target_pod(pods: &Api<Pod>, vmim_uid: &str) -> Option<Value> {
    let list = pods
        .list(&ListParams::default().labels(&format!("kubevirt.io/migrationJobUID={vmim_uid}")))
        .await
        .ok()?;
    serde_json::to_value(list.items.into_iter().next()?).ok()
}

/// intel-1 and intel-2 are default (Intel Skylake) workers; amd-1 is an AMD EPYC-Milan with
/// the CPU manager and 1Gi hugepages.
fn config() -> SandboxConfig {
    let mut amd = NodeTemplate::worker("amd-1", "32", "128Gi", "110");
    amd.labels = cpu_labels("vendor=AMD model=EPYC-Milan features=avx2,svm,sev").unwrap();
    amd.labels.insert("kubevirt.io/cpumanager".into(), "true".into());
    amd.extra_capacity.insert("hugepages-1Gi".into(), "8Gi".into());
    let mut config = SandboxConfig {
        nodes: vec![
            NodeTemplate::worker("intel-1", "32", "128Gi", "110"),
            NodeTemplate::worker("intel-2", "32", "128Gi", "110"),
            amd,
        ],
        ..SandboxConfig::default()
    };
    // The unschedulable target pod must stay Pending while the test looks at it.
    config.sim.migration_unschedulable_timeout_ms = 600_000;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_model_migrations_stay_on_the_source_cpu_and_hugepages_render_as_kubevirt_does() {
    let sandbox = Sandbox::start(config()).await.expect("sandbox starts");
    let c = sandbox.client();
    let nodes: Api<Node> = Api::all(c.clone());
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let vmis: Api<DynamicObject> =
        Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachineInstance"));
    let vmims: Api<DynamicObject> = Api::namespaced_with(
        c.clone(),
        "default",
        &kubevirt_resource("VirtualMachineInstanceMigration"),
    );

    // Start the VM on intel-1.
    cordon(&nodes, "intel-2", true).await;
    cordon(&nodes, "amd-1", true).await;
    create_vm(c.clone(), "app", json!([])).await;
    let vmi = running_vmi(&vmis, "app", None).await;
    assert_eq!(vmi["status"]["nodeName"], "intel-1");
    assert_eq!(vmi["spec"]["domain"]["cpu"]["model"], "host-model");
    cordon(&nodes, "intel-2", false).await;
    cordon(&nodes, "amd-1", false).await;

    // Its target pod can only go to the other Skylake node.
    let uid = migrate(&vmims, "to-intel", "app").await;
    let m = wait_for(
        "migration to-intel to finish",
        Duration::from_secs(120),
        || async {
            let m = serde_json::to_value(vmims.get("to-intel").await.ok()?).ok()?;
            matches!(m["status"]["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(m)
        },
    )
    .await;
    assert_eq!(m["status"]["phase"], "Succeeded", "{m:#}");
    let target = target_pod(&pods, &uid).await.expect("target pod");
    assert_eq!(target["spec"]["nodeName"], "intel-2");
    let sel = &target["spec"]["nodeSelector"];
    assert_eq!(sel["cpu-vendor.node.kubevirt.io/Intel"], "true");
    assert_eq!(
        sel["cpu-model-migration.node.kubevirt.io/Skylake-Client-IBRS"],
        "true"
    );
    assert_eq!(sel["cpu-feature.node.kubevirt.io/vmx"], "true");
    // The target selects the expanded machine type the VMI runs with (status.machine.type,
    // template.go), not the spec's alias.
    assert_eq!(vmi["status"]["machine"]["type"], "pc-q35-rhel9.6.0");
    assert_eq!(sel["machine-type.node.kubevirt.io/pc-q35-rhel9.6.0"], "true");
    assert!(sel.get("machine-type.node.kubevirt.io/q35").is_none());

    // Now the only other schedulable node is AMD: the target pod stays Pending.
    cordon(&nodes, "intel-1", true).await;
    let uid = migrate(&vmims, "to-amd", "app").await;
    let pending = wait_for(
        "the target pod to be unschedulable",
        Duration::from_secs(60),
        || async {
            let p = target_pod(&pods, &uid).await?;
            let c = p["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "PodScheduled")?
                .clone();
            (c["status"] == "False").then_some((p, c))
        },
    )
    .await;
    let (p, cond) = pending;
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(cond["reason"], "Unschedulable", "{cond:#}");
    let msg = cond["message"].as_str().unwrap_or_default();
    // Kubernetes 1.20's NodeAffinity plugin reports a nodeSelector mismatch as "didn't match
    // Pod's node affinity" (later releases say "node affinity/selector"): here amd-1, whose
    // labels lack the Intel vendor and Skylake host-model keys of the target's nodeSelector.
    assert!(
        msg.contains("1 node(s) didn't match Pod's node affinity"),
        "{msg}"
    );
    assert_eq!(
        p["spec"]["nodeSelector"]["cpu-vendor.node.kubevirt.io/Intel"],
        "true"
    );
    assert!(p["spec"].get("nodeName").is_none_or(Value::is_null));
    let m = serde_json::to_value(vmims.get("to-amd").await.unwrap()).unwrap();
    assert_eq!(m["status"]["phase"], "Scheduling", "{m:#}");
    vmims.delete("to-amd", &Default::default()).await.unwrap();
    cordon(&nodes, "intel-1", false).await;

    // A 2-vCPU VMI with dedicated CPUs and 1Gi hugepages (reference §1d, §2).
    let vmi: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "pinned", "namespace": "default"},
        "spec": {"domain": {
            "cpu": {"cores": 2, "dedicatedCpuPlacement": true},
            "memory": {"guest": "4Gi", "hugepages": {"pageSize": "1Gi"}},
            "resources": {"requests": {"memory": "4Gi"}},
            "devices": {"interfaces": [{"name": "default", "masquerade": {}}]},
        }, "networks": [{"name": "default", "pod": {}}]},
    }))
    .unwrap();
    vmis.create(&PostParams::default(), &vmi).await.unwrap();
    let vmi = running_vmi(&vmis, "pinned", None).await;
    assert_eq!(
        vmi["status"]["nodeName"], "amd-1",
        "only amd-1 has the CPU manager"
    );
    let pod = pods
        .list(&ListParams::default().labels(&format!(
            "kubevirt.io/created-by={}",
            vmi["metadata"]["uid"].as_str().unwrap()
        )))
        .await
        .unwrap()
        .items
        .remove(0);
    let pod = serde_json::to_value(pod).unwrap();
    let res = &pod["spec"]["containers"][0]["resources"];
    let bytes = |v: &Value| quantity::bytes(v.as_str().unwrap());
    let mib = 1u64 << 20;
    for side in ["requests", "limits"] {
        let r = &res[side];
        assert_eq!(r["cpu"], "2", "{side}: {res:#}");
        assert_eq!(bytes(&r["hugepages-1Gi"]), Some(4 << 30), "{side}");
        // Overhead only: 8Mi + 1 byte page tables + 240 + 2×8 + 8 + 32 + 100 (dedicated).
        assert_eq!(bytes(&r["memory"]), Some(404 * mib + 1), "{side}");
        assert_eq!(r["devices.kubevirt.io/kvm"], "1", "{side}");
        assert_eq!(r["devices.kubevirt.io/vhost-net"], "1", "{side}");
    }
    assert_eq!(pod["spec"]["nodeSelector"]["kubevirt.io/cpumanager"], "true");
    assert_eq!(pod["status"]["qosClass"], "Guaranteed", "{:#}", pod["status"]);
    drop(sandbox);
}

/// An SEV VM needs a node labelled `kubevirt.io/sev` with the `devices.kubevirt.io/sev`
/// device plugin, and is never live-migratable; an arm64 VM gets host-passthrough and the
/// `virt` machine type, lands on the arm64 node (which has no CPU model, vendor or host-model
/// labels) and stays migratable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sev_and_arm64_vms_render_and_report_as_kubevirt_does() {
    let mut sev = NodeTemplate::worker("sev-1", "32", "128Gi", "110");
    sev.labels = cpu_labels("vendor=AMD model=EPYC-Milan features=avx2,svm,sev").unwrap();
    sev.labels.insert("kubevirt.io/sev".into(), "true".into());
    sev.extra_capacity
        .insert("devices.kubevirt.io/sev".into(), "15".into());
    let mut arm = NodeTemplate::worker("arm-1", "32", "128Gi", "110");
    arm.labels = [
        ("kubernetes.io/arch", "arm64"),
        ("beta.kubernetes.io/arch", "arm64"),
        ("machine-type.node.kubevirt.io/virt", "true"),
        ("machine-type.node.kubevirt.io/virt-rhel9.6.0", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = SandboxConfig {
        nodes: vec![NodeTemplate::worker("intel-1", "32", "128Gi", "110"), sev, arm],
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let c = sandbox.client();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let vmis: Api<DynamicObject> =
        Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachineInstance"));
    let vms: Api<DynamicObject> =
        Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachine"));
    let vm = |name: &str, spec: Value| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"runStrategy": "Always", "template": {"spec": spec}},
        }))
        .unwrap()
    };
    let masquerade = json!({"interfaces": [{"name": "default", "masquerade": {}}]});
    vms.create(
        &PostParams::default(),
        &vm(
            "conf",
            json!({"domain": {"resources": {"requests": {"memory": "1Gi"}}, "devices": masquerade,
                   "launchSecurity": {"sev": {"policy": {"encryptedState": false}}}}}),
        ),
    )
    .await
    .unwrap();
    vms.create(
        &PostParams::default(),
        &vm(
            "arm",
            json!({"architecture": "arm64", "domain": {"resources": {"requests": {"memory": "1Gi"}}, "devices": masquerade}}),
        ),
    )
    .await
    .unwrap();
    let condition = |v: &Value| {
        v["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "LiveMigratable")
            .cloned()
            .unwrap()
    };
    let launcher = |vmi: &Value| {
        let uid = vmi["metadata"]["uid"].as_str().unwrap().to_string();
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels(&format!("kubevirt.io/created-by={uid}")))
                .await
                .unwrap();
            serde_json::to_value(list.items.into_iter().next().expect("a launcher pod")).unwrap()
        }
    };

    let conf = running_vmi(&vmis, "conf", None).await;
    assert_eq!(conf["status"]["nodeName"], "sev-1");
    let c = condition(&conf);
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("SEVNotLiveMigratable"))
    );
    let pod = launcher(&conf).await;
    assert_eq!(pod["spec"]["nodeSelector"]["kubevirt.io/sev"], "true");
    assert!(pod["spec"]["nodeSelector"].get("kubevirt.io/sev-es").is_none());
    let compute = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(compute["requests"]["devices.kubevirt.io/sev"], "1");
    assert_eq!(compute["limits"]["devices.kubevirt.io/sev"], "1");
    // 1Gi + 290Mi + 256Mi for SEV.
    assert_eq!(
        quantity::bytes(compute["requests"]["memory"].as_str().unwrap()),
        Some((1024 + 290 + 256) << 20)
    );

    let arm = running_vmi(&vmis, "arm", None).await;
    assert_eq!(arm["status"]["nodeName"], "arm-1");
    assert_eq!(arm["spec"]["domain"]["cpu"]["model"], "host-passthrough");
    assert_eq!(arm["spec"]["domain"]["machine"]["type"], "virt");
    assert_eq!(arm["status"]["machine"]["type"], "virt-rhel9.6.0");
    assert_eq!(
        condition(&arm)["status"],
        "True",
        "host-passthrough is not checked"
    );
    let pod = launcher(&arm).await;
    assert_eq!(pod["spec"]["nodeSelector"]["kubernetes.io/arch"], "arm64");
    assert_eq!(
        pod["spec"]["nodeSelector"]["machine-type.node.kubevirt.io/virt"],
        "true"
    );
    assert!(
        pod["spec"].get("affinity").is_none(),
        "no obsolete-host-model term"
    );
}

/// A VM with `invtsc` gets the cluster's lowest TSC frequency as its topology hint and its
/// launcher pod selects the scheduling label of that frequency, which virt-controller writes
/// on the nodes that can serve it: within 250 ppm of their own, or lower on a scalable TSC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invtsc_vm_selects_the_lowest_tsc_frequency_of_the_cluster() {
    use kubevirt_sim::kubevirt::tsc;
    let mut nodes = NodeTemplate::workers(3, "32", "128Gi", "110");
    nodes[0].labels.extend(tsc::node_labels(2_400_000_000, false));
    nodes[1].labels.extend(tsc::node_labels(2_500_000_000, true));
    nodes[2].labels.extend(tsc::node_labels(2_600_000_000, false));
    // The invtsc feature itself is required too (cpu-feature label).
    for n in &mut nodes {
        n.labels
            .insert("cpu-feature.node.kubevirt.io/invtsc".into(), "true".into());
    }
    let sandbox = Sandbox::start(SandboxConfig {
        nodes,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts");
    let c = sandbox.client();
    let node_api: Api<Node> = Api::all(c.clone());
    let label = "scheduling.node.kubevirt.io/tsc-frequency-2400000000";
    let has = |labels: &std::collections::BTreeMap<String, String>, k: &str| {
        labels.get(k).map(String::as_str) == Some("true")
    };
    let labelled = wait_for("the TSC scheduling labels", Duration::from_secs(30), || async {
        let list = node_api.list(&ListParams::default()).await.ok()?;
        let by_name: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> = list
            .items
            .into_iter()
            .map(|n| {
                (
                    n.metadata.name.unwrap_or_default(),
                    n.metadata.labels.unwrap_or_default(),
                )
            })
            .collect();
        (has(&by_name["node-1"], label) && has(&by_name["node-2"], label)).then_some(by_name)
    })
    .await;
    assert!(
        !labelled["node-3"].contains_key(label),
        "2.4 GHz is beyond node-3's tolerance"
    );
    assert!(has(
        &labelled["node-3"],
        "scheduling.node.kubevirt.io/tsc-frequency-2600000000"
    ));
    assert!(!labelled["node-1"].contains_key("scheduling.node.kubevirt.io/tsc-frequency-2500000000"));

    let vms: Api<DynamicObject> =
        Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachine"));
    let vm: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "timer", "namespace": "default"},
        "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {
            "cpu": {"features": [{"name": "invtsc", "policy": "require"}]},
            "resources": {"requests": {"memory": "1Gi"}},
            "devices": {"interfaces": [{"name": "default", "masquerade": {}}]}}}}},
    }))
    .unwrap();
    vms.create(&PostParams::default(), &vm).await.unwrap();
    let vmis: Api<DynamicObject> =
        Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachineInstance"));
    let vmi = running_vmi(&vmis, "timer", None).await;
    assert_eq!(vmi["status"]["topologyHints"]["tscFrequency"], 2_400_000_000u64);
    assert_ne!(vmi["status"]["nodeName"], "node-3");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let uid = vmi["metadata"]["uid"].as_str().unwrap();
    let pod = pods
        .list(&ListParams::default().labels(&format!("kubevirt.io/created-by={uid}")))
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(pod.spec.unwrap().node_selector.unwrap()[label], "true");
}
