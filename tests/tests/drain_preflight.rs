//! `kubectl vm-drain-safe NODE --dry-run` on the sandbox: the plan names each blocker, and a
//! dry run changes nothing.

use std::time::Duration;

use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::Value;
use vm_e2e::{kubectl, run_plugin, start_vms_on_node_1};

const VMS: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: db-data, namespace: default}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: web, namespace: default}
spec:
  runStrategy: Always
  template:
    spec:
      evictionStrategy: LiveMigrate
      domain: {resources: {requests: {memory: 1Gi}}}
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: pinned, namespace: default}
spec:
  runStrategy: Always
  template:
    spec:
      evictionStrategy: LiveMigrate
      nodeSelector: {disk: nvme}
      domain: {resources: {requests: {memory: 1Gi}}}
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: db, namespace: default}
spec:
  runStrategy: Always
  template:
    spec:
      evictionStrategy: LiveMigrate
      domain: {resources: {requests: {memory: 1Gi}}}
      volumes: [{name: data, persistentVolumeClaim: {claimName: db-data}}]
---
apiVersion: v1
kind: Pod
metadata: {name: singleton, namespace: default, labels: {app: singleton}}
spec:
  nodeName: node-1
  containers: [{name: c, image: busybox}]
---
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {name: singleton, namespace: default}
spec: {minAvailable: 1, selector: {matchLabels: {app: singleton}}}
"#;

fn resource_versions(kubeconfig: &std::path::Path) -> String {
    kubectl(
        kubeconfig,
        &[
            "get",
            "nodes,pods,vm,vmi,vmim,pdb",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_names_every_blocker_and_changes_nothing() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let _ = kubectl(&kc, &["label", "node", "node-1", "disk=nvme"]);
    start_vms_on_node_1(&kc, VMS, 3);
    tokio::time::sleep(Duration::from_secs(3)).await; // the disruption controller computes the PDB

    let before = resource_versions(&kc);
    let out = run_plugin(
        "kubectl-vm_drain_safe",
        &kc,
        &["node-1", "--dry-run", "-o", "json"],
    );
    let after = resource_versions(&kc);
    assert_eq!(before, after, "a dry run changes nothing");
    assert_eq!(
        out.status.code(),
        Some(1),
        "blocked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["apiVersion"], "vm-drain-safe/v1");
    assert_eq!(plan["feasible"], false);
    let vm = |name: &str| {
        plan["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(vm("web")["action"], "migrate");
    assert!(matches!(vm("web")["target"].as_str(), Some("node-2" | "node-3")));
    assert_eq!(vm("pinned")["action"], "blocked");
    assert!(
        vm("pinned")["reasons"]
            .to_string()
            .contains("nodeSelector disk=nvme"),
        "{}",
        vm("pinned")
    );
    assert_eq!(vm("db")["action"], "blocked");
    assert!(
        vm("db")["reasons"].to_string().contains("DisksNotLiveMigratable"),
        "{}",
        vm("db")
    );
    let blockers = plan["blockers"].to_string();
    assert!(
        blockers.contains("pod default/singleton") && blockers.contains("PodDisruptionBudget singleton"),
        "{blockers}"
    );

    // The table says the same for people.
    let out = run_plugin("kubectl-vm_drain_safe", &kc, &["node-1", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("BLOCKED") && text.contains("default/pinned"),
        "{text}"
    );

    // Without --dry-run a blocked plan is not executed: exit 1, nothing changed.
    let out = run_plugin("kubectl-vm_drain_safe", &kc, &["node-1", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(resource_versions(&kc), before);

    let out = run_plugin("kubectl-vm_drain_safe", &kc, &["node-9", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("node node-9 does not exist"));
}
