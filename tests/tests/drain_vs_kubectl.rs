//! The real `kubectl drain` on a node with a VM that cannot live-migrate but asks for
//! LiveMigrate: KubeVirt's eviction webhook refuses with 429, and kubectl drain retries every
//! five seconds until its timeout (without one, for ever). `vm-drain-safe --dry-run` says why
//! in one run, before touching anything.

use kubevirt_sim::{Sandbox, SandboxConfig};
use vm_e2e::{kubectl, run_plugin, start_vms_on_node_1, vmi_placements};

/// A VM bridged onto the pod network: KubeVirt reports it not live-migratable
/// (InterfaceNotLiveMigratable), yet its eviction strategy is LiveMigrate.
const LEGACY: &str = r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: legacy, namespace: default}
spec:
  runStrategy: Always
  template:
    spec:
      evictionStrategy: LiveMigrate
      networks: [{name: default, pod: {}}]
      domain:
        resources: {requests: {memory: 1Gi}}
        devices:
          interfaces: [{name: default, bridge: {}}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_retries_without_end_while_the_dry_run_explains_at_once() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    start_vms_on_node_1(&kc, LEGACY, 1);

    let out = std::process::Command::new("kubectl")
        .env_remove("KUBECONFIG")
        .args([
            "--kubeconfig",
            kc.to_str().unwrap(),
            "drain",
            "node-1",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=25s",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "kubectl drain cannot finish: {stderr}");
    let retries = stderr.matches("will retry after 5s").count();
    assert!(
        retries >= 3,
        "kubectl drain kept retrying the eviction ({retries} times): {stderr}"
    );
    assert!(stderr.contains("not live-migratable"), "{stderr}");
    assert!(
        vmi_placements(&kc).contains(&"legacy=Running/node-1".to_string()),
        "the VM never left: {:?}",
        vmi_placements(&kc)
    );
    let _ = kubectl(&kc, &["uncordon", "node-1"]);

    let out = run_plugin("kubectl-vm_drain_safe", &kc, &["node-1", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("default/legacy")
            && stdout.contains("not live-migratable (InterfaceNotLiveMigratable"),
        "{stdout}"
    );
}
