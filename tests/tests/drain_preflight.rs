//! `kubectl vm-drain-safe NODE --dry-run` on the sandbox: the plan names each blocker, and a
//! dry run changes nothing.

use std::time::Duration;

use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::Value;
use vm_e2e::{drain_plan, kubectl, resource_versions, run_plugin, start_vms_on_node_1, vm_domain};

/// The VMs' pod network interface is masquerade, as KubeVirt's examples declare it: one that
/// declares none gets the cluster's default binding (bridge), which KubeVirt does not
/// live-migrate, and every VM here would be blocked for that.
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
      domain: {resources: {requests: {memory: 1Gi}}, devices: {interfaces: [{name: default, masquerade: {}}]}}
      networks: [{name: default, pod: {}}]
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
      domain: {resources: {requests: {memory: 1Gi}}, devices: {interfaces: [{name: default, masquerade: {}}]}}
      networks: [{name: default, pod: {}}]
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: affine, namespace: default}
spec:
  runStrategy: Always
  template:
    spec:
      evictionStrategy: LiveMigrate
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms: [{matchExpressions: [{key: disk, operator: In, values: [nvme]}]}]
      domain: {resources: {requests: {memory: 1Gi}}, devices: {interfaces: [{name: default, masquerade: {}}]}}
      networks: [{name: default, pod: {}}]
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: db, namespace: default}
spec:
  runStrategy: Always
  template:
    spec:
      evictionStrategy: LiveMigrate
      domain: {resources: {requests: {memory: 1Gi}}, devices: {interfaces: [{name: default, masquerade: {}}]}}
      networks: [{name: default, pod: {}}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: db-data}}]
---
apiVersion: v1
kind: Pod
metadata: {name: singleton, namespace: default, labels: {app: singleton}}
spec:
  nodeName: node-1
  containers: [{name: c, image: busybox}]
"#;

/// The PDB that keeps `singleton` on the node, in the API version the server serves.
fn singleton_pdb(api_version: &str) -> String {
    format!(
        "---\napiVersion: {api_version}\nkind: PodDisruptionBudget\nmetadata: {{name: singleton, namespace: default}}\n\
spec: {{minAvailable: 1, selector: {{matchLabels: {{app: singleton}}}}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_names_every_blocker_and_changes_nothing() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let _ = kubectl(&kc, &["label", "node", "node-1", "disk=nvme"]);
    let manifests = format!("{VMS}{}", singleton_pdb(vm_e2e::pdb_api_version(&kc)));
    start_vms_on_node_1(&kc, &manifests, 4);
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
    assert_eq!(vm("affine")["action"], "blocked");
    assert!(
        vm("affine")["reasons"]
            .to_string()
            .contains("required node affinity does not match node (node-2, node-3)"),
        "{}",
        vm("affine")
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

fn small_vm(name: &str) -> String {
    format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: {name}, namespace: default}}\n\
spec:\n  runStrategy: Always\n  template:\n    spec:\n      evictionStrategy: LiveMigrate\n{}",
        vm_domain("3Gi")
    )
}

/// Two 8Gi nodes: node-1 runs a and b, node-2 runs c. Each of a and b alone fits in what
/// node-2 has left; both together do not. Then node-2 is tainted, which no VM tolerates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_checks_room_for_all_vms_together_and_taints() {
    let config = SandboxConfig {
        nodes: kubevirt_sim::nodes::NodeTemplate::workers(2, "8", "8Gi", "110"),
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let file = std::env::temp_dir().join(format!("preflight-room-{}.yaml", std::process::id()));
    let apply = |text: String| {
        std::fs::write(&file, text).unwrap();
        let _ = kubectl(&kc, &["apply", "-f", file.to_str().unwrap()]);
    };
    let running_on = |node: &str| {
        kubectl(
            &kc,
            &[
                "get",
                "vmi",
                "-o",
                "jsonpath={range .items[*]}{.status.phase}/{.status.nodeName} {end}",
            ],
        )
        .split_whitespace()
        .filter(|p| *p == format!("Running/{node}"))
        .count()
    };
    let _ = kubectl(&kc, &["cordon", "node-2"]);
    apply(format!("{}{}", small_vm("a"), small_vm("b")));
    for _ in 0..60 {
        if running_on("node-1") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = kubectl(&kc, &["uncordon", "node-2"]);
    let _ = kubectl(&kc, &["cordon", "node-1"]);
    apply(small_vm("c"));
    for _ in 0..60 {
        if running_on("node-2") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = kubectl(&kc, &["uncordon", "node-1"]);
    assert_eq!((running_on("node-1"), running_on("node-2")), (2, 1));

    let (code, plan) = drain_plan(&kc, "node-1");
    assert_eq!(code, Some(1), "{plan:#}");
    let actions: Vec<&str> = plan["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "migrate").count(), 1, "{plan:#}");
    assert_eq!(actions.iter().filter(|a| **a == "blocked").count(), 1, "{plan:#}");
    assert!(
        plan["blockers"].to_string().contains("memory free"),
        "{}",
        plan["blockers"]
    );

    let _ = kubectl(
        &kc,
        &["taint", "node", "node-2", "maintenance=planned:NoSchedule"],
    );
    let (code, plan) = drain_plan(&kc, "node-1");
    assert_eq!(code, Some(1), "{plan:#}");
    let blockers = plan["blockers"].to_string();
    assert!(
        blockers.contains("default/a") && blockers.contains("default/b"),
        "{blockers}"
    );
    assert!(blockers.contains("maintenance=planned:NoSchedule"), "{blockers}");
    let _ = std::fs::remove_file(&file);
}
