//! Simulated KubeVirt on the real control plane: the VM controller per runStrategy, the
//! launcher pod placed by the real scheduler, VMI phases and conditions, node failure.
//! Needs the binaries from `scripts/install-control-plane` (fails without them).

mod common;
use common::wait_for;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kubevirt_sim::crds::kubevirt_resource;
use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

struct Apis {
    vms: Api<DynamicObject>,
    vmis: Api<DynamicObject>,
    pods: Api<Pod>,
}

impl Apis {
    fn new(sandbox: &Sandbox) -> Self {
        let c = sandbox.client();
        Apis {
            vms: Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachine")),
            vmis: Api::namespaced_with(c.clone(), "default", &kubevirt_resource("VirtualMachineInstance")),
            pods: Api::namespaced(c, "default"),
        }
    }

    async fn vmi(&self, name: &str) -> Option<Value> {
        self.vmis
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .map(|o| serde_json::to_value(o).unwrap())
    }

    async fn vm(&self, name: &str) -> Value {
        serde_json::to_value(self.vms.get(name).await.unwrap()).unwrap()
    }

    /// Waits for the VMI `name` to be Running and returns it.
    async fn running_vmi(&self, name: &str, not_uid: Option<&str>) -> Value {
        common::running_vmi(&self.vmis, name, not_uid).await
    }

    async fn launcher_pod(&self, vmi: &Value) -> Pod {
        let uid = vmi["metadata"]["uid"].as_str().unwrap();
        let pods = self
            .pods
            .list(&ListParams::default().labels(&format!("kubevirt.io/created-by={uid}")))
            .await
            .unwrap();
        pods.items.into_iter().next().expect("a launcher pod")
    }

    /// Force-deletes the launcher pod: the VMI then fails, as when its pod vanishes.
    async fn kill_launcher(&self, vmi: &Value) {
        let pod = self.launcher_pod(vmi).await;
        common::force_delete(&self.pods, pod.metadata.name.as_ref().unwrap()).await;
    }
}

fn vm(name: &str, strategy: Option<&str>, running: Option<bool>, extra_spec: Value) -> DynamicObject {
    let mut spec = json!({
        "domain": {
            "cpu": {"cores": 2},
            "resources": {"requests": {"memory": "2Gi"}},
            "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}], "interfaces": [{"name": "default", "masquerade": {}}]},
        },
        "networks": [{"name": "default", "pod": {}}],
        "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}],
    });
    if let (Some(s), Value::Object(extra)) = (spec.as_object_mut(), extra_spec) {
        s.extend(extra);
    }
    let mut vm_spec = json!({"template": {"metadata": {"labels": {"app": name}}, "spec": spec}});
    if let Some(s) = strategy {
        vm_spec["runStrategy"] = json!(s);
    }
    if let Some(r) = running {
        vm_spec["running"] = json!(r);
    }
    serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default"},
        "spec": vm_spec,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_runs_through_its_launcher_pod_placed_by_the_real_scheduler() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(2))
        .await
        .expect("sandbox starts");
    let apis = Apis::new(&sandbox);
    apis.vms
        .create(
            &PostParams::default(),
            &vm(
                "web",
                Some("Always"),
                None,
                json!({"nodeSelector": {"kubernetes.io/hostname": "node-2"}}),
            ),
        )
        .await
        .unwrap();
    let vmi = apis.running_vmi("web", None).await;
    assert_eq!(vmi["status"]["nodeName"], "node-2");
    assert_eq!(vmi["metadata"]["labels"]["kubevirt.io/nodeName"], "node-2");
    assert_eq!(vmi["metadata"]["labels"]["app"], "web");
    assert_eq!(
        vmi["spec"]["evictionStrategy"], "None",
        "cluster default stamped on the VMI"
    );
    assert_eq!(vmi["spec"]["domain"]["memory"]["guest"], "2Gi");
    assert_eq!(vmi["metadata"]["ownerReferences"][0]["kind"], "VirtualMachine");
    let phases: Vec<&str> = vmi["status"]["phaseTransitionTimestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["Pending", "Scheduling", "Scheduled", "Running"]);
    let cond = |t: &str| {
        vmi["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
    };
    assert_eq!(cond("Ready").unwrap()["status"], "True");
    assert_eq!(cond("LiveMigratable").unwrap()["status"], "True");

    let pod = apis.launcher_pod(&vmi).await;
    let meta = &pod.metadata;
    assert!(meta.name.as_ref().unwrap().starts_with("virt-launcher-web-"));
    let labels = meta.labels.clone().unwrap();
    assert_eq!(labels["kubevirt.io"], "virt-launcher");
    assert_eq!(labels["vm.kubevirt.io/name"], "web");
    assert_eq!(meta.annotations.as_ref().unwrap()["kubevirt.io/domain"], "web");
    let owner = &meta.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("VirtualMachineInstance", Some(true))
    );
    let spec = pod.spec.unwrap();
    assert_eq!(
        spec.node_name.as_deref(),
        Some("node-2"),
        "placed by kube-scheduler per the VMI's nodeSelector"
    );
    assert_eq!(spec.node_selector.unwrap()["kubevirt.io/schedulable"], "true");
    let requests = spec.containers[0].resources.clone().unwrap().requests.unwrap();
    assert_eq!(
        requests["memory"].0, "2348Mi",
        "guest memory plus KubeVirt's overhead"
    );

    let vm = wait_for("VM status Running", Duration::from_secs(20), || async {
        let vm = apis.vm("web").await;
        (vm["status"]["printableStatus"] == "Running" && vm["status"]["ready"] == true).then_some(vm)
    })
    .await;
    assert_eq!(vm["status"]["runStrategy"], "Always");

    // Stop: Halted deletes the VMI (and its pod), the VM shows Stopped.
    apis.vms
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"runStrategy": "Halted"}})),
        )
        .await
        .unwrap();
    wait_for(
        "the VMI and its pod to be gone",
        Duration::from_secs(60),
        || async {
            let gone = apis.vmi("web").await.is_none();
            let pods = apis
                .pods
                .list(&ListParams::default().labels("kubevirt.io=virt-launcher"))
                .await
                .ok()?;
            (gone && pods.items.is_empty()).then_some(())
        },
    )
    .await;
    wait_for("VM Stopped", Duration::from_secs(20), || async {
        (apis.vm("web").await["status"]["printableStatus"] == "Stopped").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_strategies_react_to_a_failed_vmi_as_kubevirt_does() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(2))
        .await
        .expect("sandbox starts");
    let apis = Apis::new(&sandbox);
    let cases = [
        ("always", Some("Always"), None),
        ("rerun", Some("RerunOnFailure"), None),
        ("manual", Some("Manual"), None),
        ("once", Some("Once"), None),
        ("legacy", None, Some(true)),
    ];
    for (name, strategy, running) in cases {
        apis.vms
            .create(&PostParams::default(), &vm(name, strategy, running, json!({})))
            .await
            .unwrap();
    }
    apis.vms
        .create(
            &PostParams::default(),
            &vm("halted", Some("Halted"), None, json!({})),
        )
        .await
        .unwrap();
    // Manual does not start by itself.
    let mut first = std::collections::HashMap::new();
    for name in ["always", "rerun", "once", "legacy"] {
        first.insert(name, apis.running_vmi(name, None).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        apis.vmi("manual").await.is_none(),
        "Manual creates no VMI without a start request"
    );
    assert!(apis.vmi("halted").await.is_none(), "Halted creates no VMI");
    assert_eq!(
        apis.vm("legacy").await["status"]["runStrategy"],
        "Always",
        "running: true means Always"
    );

    for name in ["always", "rerun", "once", "legacy"] {
        apis.kill_launcher(&first[name]).await;
    }
    for name in ["always", "rerun", "legacy"] {
        let old = first[name]["metadata"]["uid"].as_str().unwrap();
        apis.running_vmi(name, Some(old)).await;
    }
    let once = wait_for("the Once VMI to fail", Duration::from_secs(40), || async {
        let v = apis.vmi("once").await?;
        (v["status"]["phase"] == "Failed").then_some(v)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = apis.vmi("once").await.expect("a Once VM keeps its final VMI");
    assert_eq!(still["metadata"]["uid"], once["metadata"]["uid"]);
    assert_eq!(still["status"]["phase"], "Failed");

    // A Start request starts a Manual VM (what virt-api's start subresource writes).
    let vms_status: Api<DynamicObject> = apis.vms.clone();
    vms_status
        .patch_status(
            "manual",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"stateChangeRequests": [{"action": "Start"}]}})),
        )
        .await
        .unwrap();
    apis.running_vmi("manual", None).await;

    // Guest shutdown (VMI Succeeded) under RerunOnFailure: deleted, not restarted.
    let rerun = apis
        .running_vmi("rerun", Some(first["rerun"]["metadata"]["uid"].as_str().unwrap()))
        .await;
    let pod = apis.launcher_pod(&rerun).await;
    apis.pods
        .patch_status(
            pod.metadata.name.as_ref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
        )
        .await
        .unwrap();
    wait_for(
        "the Succeeded RerunOnFailure VMI to be removed",
        Duration::from_secs(60),
        || async { apis.vmi("rerun").await.is_none().then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        apis.vmi("rerun").await.is_none(),
        "RerunOnFailure does not restart after a guest shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_vmi_stays_scheduling_and_migratability_follows_the_volumes() {
    let mut config = SandboxConfig::with_nodes(2);
    config.kubevirt_configuration = json!({"evictionStrategy": "LiveMigrate"});
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let apis = Apis::new(&sandbox);
    apis.vms
        .create(
            &PostParams::default(),
            &vm(
                "nowhere",
                Some("Always"),
                None,
                json!({"nodeSelector": {"zone": "mars"}}),
            ),
        )
        .await
        .unwrap();
    let vmi = wait_for(
        "the VMI to report Unschedulable",
        Duration::from_secs(60),
        || async {
            let v = apis.vmi("nowhere").await?;
            let unsched = v["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable");
            unsched.then_some(v)
        },
    )
    .await;
    assert_eq!(vmi["status"]["phase"], "Scheduling");
    assert!(vmi["status"].get("nodeName").is_none());
    assert_eq!(
        vmi["spec"]["evictionStrategy"], "LiveMigrate",
        "stamped from the KubeVirt CR"
    );
    wait_for("VM ErrorUnschedulable", Duration::from_secs(20), || async {
        (apis.vm("nowhere").await["status"]["printableStatus"] == "ErrorUnschedulable").then_some(())
    })
    .await;

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(sandbox.client(), "default");
    for (name, mode) in [("data-rwo", "ReadWriteOnce"), ("data-rwx", "ReadWriteMany")] {
        let pvc = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}}})).unwrap();
        pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    }
    for (name, claim) in [("rwo", "data-rwo"), ("rwx", "data-rwx")] {
        let extra = json!({"volumes": [
            {"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": claim}},
        ]});
        apis.vms
            .create(&PostParams::default(), &vm(name, Some("Always"), None, extra))
            .await
            .unwrap();
    }
    let live_migratable = |v: &Value| {
        v["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "LiveMigratable")
            .cloned()
            .unwrap()
    };
    let rwo = apis.running_vmi("rwo", None).await;
    let c = live_migratable(&rwo);
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("DisksNotLiveMigratable"))
    );
    assert!(c["message"].as_str().unwrap().contains("data-rwo"));
    let rwx = apis.running_vmi("rwx", None).await;
    assert_eq!(live_migratable(&rwx)["status"], "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_on_a_dead_node_restarts_elsewhere_only_once_its_pod_is_force_deleted() {
    let mut config = SandboxConfig::with_nodes(2);
    config.control_plane.node_monitor_grace_period = Duration::from_secs(6);
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let apis = Apis::new(&sandbox);
    apis.vms
        .create(&PostParams::default(), &vm("db", Some("Always"), None, json!({})))
        .await
        .unwrap();
    let vmi = apis.running_vmi("db", None).await;
    let node = vmi["status"]["nodeName"].as_str().unwrap().to_string();
    sandbox.node_down(&node).unwrap();
    // The real node lifecycle controller marks the pod not ready; the VMI stays Running.
    let stuck = wait_for("the VMI to lose readiness", Duration::from_secs(80), || async {
        let v = apis.vmi("db").await?;
        let ready = v["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        (ready["status"] == "False").then_some(v)
    })
    .await;
    assert_eq!(stuck["status"]["phase"], "Running");
    assert_eq!(stuck["metadata"]["uid"], vmi["metadata"]["uid"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        apis.vmi("db").await.unwrap()["metadata"]["uid"],
        vmi["metadata"]["uid"],
        "nothing restarts while the pod exists"
    );

    // The documented recovery: force-delete the launcher pod.
    apis.kill_launcher(&vmi).await;
    let fresh = apis
        .running_vmi("db", Some(vmi["metadata"]["uid"].as_str().unwrap()))
        .await;
    assert_ne!(
        fresh["status"]["nodeName"].as_str().unwrap(),
        node,
        "restarted on the healthy node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_out_of_service_taint_releases_vms_of_a_dead_node() {
    let mut config = SandboxConfig::with_nodes(2);
    config.control_plane.node_monitor_grace_period = Duration::from_secs(6);
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let apis = Apis::new(&sandbox);
    apis.vms
        .create(
            &PostParams::default(),
            &vm("svc", Some("Always"), None, json!({})),
        )
        .await
        .unwrap();
    let vmi = apis.running_vmi("svc", None).await;
    let node = vmi["status"]["nodeName"].as_str().unwrap().to_string();
    sandbox.node_down(&node).unwrap();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(sandbox.client());
    // The 1.20 node lifecycle controller rewrites the whole taint list, from a possibly stale
    // read and unguarded, when it taints a node that stopped reporting: an out-of-service
    // taint added before it is done can be lost. So wait until it has put both its
    // `unreachable` taints on, then add ours to the list just read, guarded by the node's
    // resourceVersion (a conflict is retried on a fresh read).
    wait_for(
        "the node to go NotReady, tainted unreachable, then out-of-service",
        Duration::from_secs(80),
        || async {
            let n = nodes.get(&node).await.ok()?;
            let conditions = n.status.as_ref()?.conditions.as_ref()?;
            let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
            let mut taints = n.spec.as_ref()?.taints.clone()?;
            let unreachable = |effect: &str| {
                taints
                    .iter()
                    .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == effect)
            };
            if ready.status == "True" || !unreachable("NoExecute") || !unreachable("NoSchedule") {
                return None;
            }
            taints.push(k8s_openapi::api::core::v1::Taint {
                key: "node.kubernetes.io/out-of-service".into(),
                value: Some("nodeshutdown".into()),
                effect: "NoExecute".into(),
                time_added: None,
            });
            let taint = json!({
                "metadata": {"resourceVersion": n.metadata.resource_version},
                "spec": {"taints": taints},
            });
            match nodes
                .patch(&node, &PatchParams::default(), &Patch::Merge(taint))
                .await
            {
                Ok(_) => Some(()),
                Err(kube::Error::Api(e)) if e.code == 409 => None,
                Err(e) => panic!("adding the out-of-service taint: {e}"),
            }
        },
    )
    .await;
    let fresh = apis
        .running_vmi("svc", Some(vmi["metadata"]["uid"].as_str().unwrap()))
        .await;
    assert_ne!(fresh["status"]["nodeName"].as_str().unwrap(), node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_keeps_its_vmis_running() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(2))
        .await
        .expect("sandbox starts");
    let apis = Apis::new(&sandbox);
    let sets: Api<DynamicObject> = Api::namespaced_with(
        sandbox.client(),
        "default",
        &kubevirt_resource("VirtualMachineInstanceReplicaSet"),
    );
    let rs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceReplicaSet",
        "metadata": {"name": "pool", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "pool"}}, "template": {
            "metadata": {"labels": {"app": "pool"}},
            "spec": {"domain": {"resources": {"requests": {"memory": "1Gi"}}, "devices": {}}},
        }},
    }))
    .unwrap();
    sets.create(&PostParams::default(), &rs).await.unwrap();
    let running = || async {
        let list = apis
            .vmis
            .list(&ListParams::default().labels("app=pool"))
            .await
            .ok()?;
        let vals: Vec<Value> = list
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .collect();
        Some(vals)
    };
    let three = wait_for("3 replicas Running", Duration::from_secs(90), || async {
        let v = running().await?;
        (v.len() == 3 && v.iter().all(|v| v["status"]["phase"] == "Running")).then_some(v)
    })
    .await;
    for v in &three {
        assert!(v["metadata"]["name"].as_str().unwrap().starts_with("pool"));
        assert_eq!(
            v["metadata"]["ownerReferences"][0]["kind"],
            "VirtualMachineInstanceReplicaSet"
        );
    }
    wait_for("readyReplicas 3", Duration::from_secs(30), || async {
        let s = sets.get("pool").await.ok()?;
        (s.data["status"]["readyReplicas"] == 3).then_some(())
    })
    .await;
    // A failed replica is replaced.
    apis.kill_launcher(&three[0]).await;
    let gone = three[0]["metadata"]["uid"].clone();
    wait_for(
        "the failed replica to be replaced",
        Duration::from_secs(90),
        || async {
            let v = running().await?;
            (v.len() == 3
                && v.iter()
                    .all(|v| v["status"]["phase"] == "Running" && v["metadata"]["uid"] != gone))
            .then_some(())
        },
    )
    .await;
    // Scaled down to 1.
    sets.patch(
        "pool",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait_for("1 replica left", Duration::from_secs(60), || async {
        (running().await?.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_whose_vmi_fails_before_running_backs_off() {
    let mut config = SandboxConfig::with_nodes(2);
    config.sim.start_backoff_base_ms = 8_000;
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let apis = Apis::new(&sandbox);
    apis.vms
        .create(
            &PostParams::default(),
            &vm(
                "crashy",
                Some("Always"),
                None,
                json!({"nodeSelector": {"zone": "mars"}}),
            ),
        )
        .await
        .unwrap();
    let first = wait_for(
        "a Scheduling VMI with its pod",
        Duration::from_secs(60),
        || async {
            let v = apis.vmi("crashy").await?;
            (v["status"]["phase"] == "Scheduling").then_some(v)
        },
    )
    .await;
    // The launcher pod goes away before the VMI ever ran: a failed start.
    apis.kill_launcher(&first).await;
    let vm = wait_for("CrashLoopBackOff", Duration::from_secs(30), || async {
        let vm = apis.vm("crashy").await;
        (vm["status"]["printableStatus"] == "CrashLoopBackOff").then_some(vm)
    })
    .await;
    assert_eq!(vm["status"]["startFailure"]["consecutiveFailCount"], 1);
    assert_eq!(
        vm["status"]["startFailure"]["lastFailedVMIUID"],
        first["metadata"]["uid"]
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        apis.vmi("crashy").await.is_none(),
        "no new VMI during the backoff"
    );
    // After the backoff a new VMI is created.
    wait_for("a new VMI after the backoff", Duration::from_secs(30), || async {
        let v = apis.vmi("crashy").await?;
        (v["metadata"]["uid"] != first["metadata"]["uid"]).then_some(())
    })
    .await;
}

/// KubeVirt's webhook and launcher rendering for a VM that sets only limits and no network:
/// the CPU limit becomes the request, the pod is Guaranteed (+100Mi overhead) with the
/// `guest-console-log` container at request = limit, the VMI gets the pod network with the
/// default `bridge` binding (so it is not live-migratable), and `status.machine.type` is the
/// newest q35 machine type of the node it runs on, while the pod selects plain `q35`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limits_only_vm_gets_a_guaranteed_pod_the_console_log_and_the_default_bridge() {
    let mut config = SandboxConfig::with_nodes(2);
    let node2 = &mut config.nodes[1].labels;
    node2.remove("machine-type.node.kubevirt.io/pc-q35-rhel9.6.0");
    for m in ["pc-q35-rhel9.4.0", "pc-q35-rhel9.5.0"] {
        node2.insert(format!("machine-type.node.kubevirt.io/{m}"), "true".into());
    }
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let apis = Apis::new(&sandbox);
    let extra = json!({
        "nodeSelector": {"kubernetes.io/hostname": "node-2"},
        "domain": {"resources": {"limits": {"cpu": "2", "memory": "2Gi"}}, "devices": {}},
        "networks": [],
    });
    apis.vms
        .create(&PostParams::default(), &vm("g", Some("Always"), None, extra))
        .await
        .unwrap();
    let vmi = apis.running_vmi("g", None).await;
    assert_eq!(vmi["spec"]["domain"]["resources"]["requests"]["cpu"], "2");
    assert_eq!(
        vmi["spec"]["domain"]["devices"]["interfaces"],
        json!([{"name": "default", "bridge": {}}])
    );
    assert_eq!(vmi["spec"]["networks"], json!([{"name": "default", "pod": {}}]));
    assert_eq!(vmi["status"]["machine"]["type"], "pc-q35-rhel9.5.0");
    let migratable = vmi["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "LiveMigratable")
        .cloned()
        .unwrap();
    assert_eq!(
        (migratable["status"].as_str(), migratable["reason"].as_str()),
        (Some("False"), Some("InterfaceNotLiveMigratable"))
    );

    let pod = apis.launcher_pod(&vmi).await;
    let spec = pod.spec.clone().unwrap();
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["compute", "guest-console-log"]);
    let console = spec.containers[1].resources.clone().unwrap();
    assert_eq!(
        console.requests, console.limits,
        "request = limit in a Guaranteed pod"
    );
    let sum = |key: &str, parse: fn(&str) -> Option<u64>| -> u64 {
        spec.containers
            .iter()
            .map(|c| parse(&c.resources.as_ref().unwrap().requests.as_ref().unwrap()[key].0).unwrap())
            .sum()
    };
    // 2 CPUs + 15m; 2Gi + 396Mi overhead (240 + 2×8 + 8 + 32 + 100 Guaranteed) + 60M.
    assert_eq!(sum("cpu", kubevirt_sim::quantity::millicores), 2015);
    assert_eq!(
        sum("memory", kubevirt_sim::quantity::bytes),
        (2048 + 396) * 1024 * 1024 + 60_000_000
    );
    assert_eq!(
        pod.status.as_ref().unwrap().qos_class.as_deref(),
        Some("Guaranteed"),
        "the API server's QoS class"
    );
    let selector = spec.node_selector.unwrap();
    assert_eq!(selector["machine-type.node.kubevirt.io/q35"], "true");
    assert!(!selector.contains_key("machine-type.node.kubevirt.io/pc-q35-rhel9.5.0"));

    // Stopping still ends the pod, with its second container.
    apis.vms
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"runStrategy": "Halted"}})),
        )
        .await
        .unwrap();
    wait_for(
        "the VMI and its pod to be gone",
        Duration::from_secs(60),
        || async {
            let pods = apis
                .pods
                .list(&ListParams::default().labels("kubevirt.io=virt-launcher"))
                .await
                .ok()?;
            (apis.vmi("g").await.is_none() && pods.items.is_empty()).then_some(())
        },
    )
    .await;
}

/// A Multus network whose NetworkAttachmentDefinition names a device-plugin resource
/// (`k8s.v1.cni.cncf.io/resourceName`) makes the compute container ask for one, so the VM
/// can only run where that pool has room; until its NAD exists, the VMI gets no pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multus_network_asks_for_its_nads_resource() {
    let mut config = SandboxConfig::with_nodes(2);
    config.nodes[1]
        .extra_capacity
        .insert("intel.com/sriov_a".into(), "4".into());
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let apis = Apis::new(&sandbox);
    let extra = json!({
        "domain": {"resources": {"requests": {"memory": "1Gi"}}, "devices": {"interfaces": [
            {"name": "default", "masquerade": {}}, {"name": "fast", "sriov": {}}]}},
        "networks": [{"name": "default", "pod": {}}, {"name": "fast", "multus": {"networkName": "sriov-a"}}],
    });
    apis.vms
        .create(&PostParams::default(), &vm("net", Some("Always"), None, extra))
        .await
        .unwrap();
    // No NAD yet: the VMI stays Pending without a pod.
    let vmi = wait_for("the VMI to be Pending", Duration::from_secs(30), || async {
        let v = apis.vmi("net").await?;
        (v["status"]["phase"] == "Pending").then_some(v)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let uid = vmi["metadata"]["uid"].as_str().unwrap();
    let pods = apis
        .pods
        .list(&ListParams::default().labels(&format!("kubevirt.io/created-by={uid}")))
        .await
        .unwrap();
    assert!(pods.items.is_empty(), "no launcher pod without its NAD");

    let nads: Api<DynamicObject> = Api::namespaced_with(
        sandbox.client(),
        "default",
        &kubevirt_resource("NetworkAttachmentDefinition"),
    );
    let nad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "sriov-a", "namespace": "default",
                     "annotations": {"k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov_a"}},
        "spec": {"config": "{\"cniVersion\": \"0.3.1\", \"type\": \"sriov\"}"},
    }))
    .unwrap();
    nads.create(&PostParams::default(), &nad).await.unwrap();
    let vmi = apis.running_vmi("net", None).await;
    assert_eq!(vmi["status"]["nodeName"], "node-2", "the only node with the pool");
    let pod = apis.launcher_pod(&vmi).await;
    let compute = pod.spec.unwrap().containers[0].resources.clone().unwrap();
    assert_eq!(compute.requests.unwrap()["intel.com/sriov_a"].0, "1");
    assert_eq!(compute.limits.unwrap()["intel.com/sriov_a"].0, "1");
}

/// The KubeVirt CR's settings reach the rendering: `network.defaultNetworkInterface:
/// masquerade` makes a VM without interfaces migratable, `virtualMachineOptions.
/// disableSerialConsoleLog` drops the console-log container (a VMI's own `logSerialConsole:
/// true` brings it back), and `supportContainerResources` sizes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubevirt_cr_sets_the_default_binding_and_the_console_log() {
    let mut config = SandboxConfig::with_nodes(1);
    config.kubevirt_configuration = json!({
        "network": {"defaultNetworkInterface": "masquerade"},
        "virtualMachineOptions": {"disableSerialConsoleLog": {}},
        "supportContainerResources": [{"type": "guest-console-log", "resources": {"limits": {"memory": "100M"}}}],
    });
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let apis = Apis::new(&sandbox);
    let plain =
        json!({"domain": {"resources": {"requests": {"memory": "1Gi"}}, "devices": {}}, "networks": []});
    let logged = json!({"domain": {"resources": {"requests": {"memory": "1Gi"}}, "devices": {"logSerialConsole": true}}, "networks": []});
    for (name, extra) in [("plain", plain), ("logged", logged)] {
        apis.vms
            .create(&PostParams::default(), &vm(name, Some("Always"), None, extra))
            .await
            .unwrap();
    }
    let vmi = apis.running_vmi("plain", None).await;
    assert_eq!(
        vmi["spec"]["domain"]["devices"]["interfaces"],
        json!([{"name": "default", "masquerade": {}}])
    );
    let migratable = vmi["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "LiveMigratable")
        .cloned()
        .unwrap();
    assert_eq!(migratable["status"], "True");
    let pod = apis.launcher_pod(&vmi).await;
    let names: Vec<String> = pod.spec.unwrap().containers.into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["compute"]);

    let vmi = apis.running_vmi("logged", None).await;
    let pod = apis.launcher_pod(&vmi).await;
    let containers = pod.spec.unwrap().containers;
    assert_eq!(containers[1].name, "guest-console-log");
    let r = containers[1].resources.clone().unwrap();
    assert_eq!(r.limits.unwrap()["memory"].0, "100M");
    assert_eq!(r.requests.unwrap()["memory"].0, "35M");
}
