//! `kubectl vm-audit` against a live API server reaches the same findings as file mode on the
//! same objects, and reports cluster errors with a defined exit status.

use std::time::Duration;

use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::Value;
use vm_e2e::{examples, kubectl, run_plugin};

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}); stderr: {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_reaches_the_same_findings_as_file_mode_on_the_same_objects() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kubeconfig = sandbox.kubeconfig();
    let _ = kubectl(&kubeconfig, &["create", "namespace", "shop"]);
    // The zones that examples/cluster/nodes.yaml describes.
    let _ = kubectl(
        &kubeconfig,
        &[
            "label",
            "node",
            "node-1",
            "node-2",
            "topology.kubernetes.io/zone=zone-a",
        ],
    );
    let _ = kubectl(
        &kubeconfig,
        &["label", "node", "node-3", "topology.kubernetes.io/zone=zone-b"],
    );
    let good = examples().join("good");
    let bad = examples().join("bad");
    let datavolumes = examples().join("datavolumes");
    // KubeVirt's other kinds and CDI's, in the shapes their docs use: a StorageClass and the
    // StorageProfile that decides a DataVolume's access mode, a standalone VMI, a VMI
    // ReplicaSet, a pool. (The corpus's VMs that name common instancetypes stay out: the
    // sandbox does not deploy them, and file mode has them built in.)
    let shapes = examples().join("docs-shapes");
    let mut apply = vec!["apply", "-f", good.to_str().unwrap(), "-f", bad.to_str().unwrap()];
    apply.extend(["-f", datavolumes.to_str().unwrap()]);
    let parts: Vec<String> = ["storage-profile.yaml", "vmi.yaml", "replicaset.yaml", "pool.yaml"]
        .iter()
        .map(|f| shapes.join(f).to_string_lossy().to_string())
        .collect();
    for part in &parts {
        apply.extend(["-f", part.as_str()]);
    }
    let _ = kubectl(&kubeconfig, &apply);

    // The simulator starts VMIs for the VMs that should run; wait until two audits agree, so the
    // comparison is made on objects that no longer change.
    let mut previous = Value::Null;
    let mut live = Value::Null;
    for _ in 0..30 {
        let out = run_plugin("kubectl-vm_audit", &kubeconfig, &["-A", "-o", "json"]);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        live = json(&out);
        if live == previous {
            break;
        }
        previous = live.clone();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(live, previous, "the cluster did not settle");
    let kinds = "virtualmachines,virtualmachineinstances,virtualmachineinstancereplicasets,virtualmachinepools,\
persistentvolumeclaims,nodes,pods,kubevirts,virtualmachineclusterinstancetypes,virtualmachineinstancetypes,\
poddisruptionbudgets,datavolumes,storageprofiles,storageclasses";
    let dump = kubectl(&kubeconfig, &["get", kinds, "-A", "-o", "yaml"]);
    let dir = tempfile_dir();
    let file = dir.join("cluster.yaml");
    std::fs::write(&file, dump).unwrap();
    let out = run_plugin(
        "kubectl-vm_audit",
        &kubeconfig,
        &["-f", file.to_str().unwrap(), "-o", "json"],
    );
    let from_files = json(&out);
    assert_eq!(
        live["findings"], from_files["findings"],
        "live and file findings differ"
    );
    assert_eq!(live["summary"], from_files["summary"]);

    let findings = live["findings"].as_array().unwrap();
    let has = |name: &str, rule: &str| findings.iter().any(|f| f["name"] == name && f["rule"] == rule);
    assert!(has("db", "live-migrate-not-migratable"), "{findings:#?}");
    // A ReadWriteOnce DataVolume template: an error from the cluster as from the file (the
    // equality above compares the words), naming the DataVolume.
    let dv = findings
        .iter()
        .find(|f| f["name"] == "fedora-dv" && f["rule"] == "live-migrate-not-migratable")
        .unwrap_or_else(|| panic!("fedora-dv is not reported: {findings:#?}"));
    assert_eq!(dv["severity"], "error", "{dv:#}");
    assert!(
        dv["message"]
            .as_str()
            .is_some_and(|m| m.contains("DataVolume fedora-dv-root") && m.contains("ReadWriteOnce")),
        "{dv:#}"
    );
    let only_file = run_plugin(
        "kubectl-vm_audit",
        &kubeconfig,
        &["-f", datavolumes.to_str().unwrap(), "-o", "json"],
    );
    let only_file = json(&only_file);
    let from_file = only_file["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "fedora-dv" && f["rule"] == "live-migrate-not-migratable")
        .unwrap_or_else(|| panic!("{only_file:#}"));
    assert_eq!(
        from_file["message"], dv["message"],
        "the same words from the file alone"
    );
    // A standalone DataVolume, and one whose access mode its class's StorageProfile gives.
    assert!(has("legacy-app", "live-migrate-not-migratable"), "{findings:#?}");
    assert!(
        !findings.iter().any(|f| f["name"] == "ubuntu-profile"),
        "ReadWriteMany from the StorageProfile: {findings:#?}"
    );
    assert!(has("vmi-fedora", "probes-liveness-too-early"), "{findings:#?}");
    assert!(has("testreplicaset", "probes-readiness-missing"), "{findings:#?}");
    assert!(has("vm-pool-cirros", "probes-liveness-missing"), "{findings:#?}");
    assert!(has("reports", "run-strategy-not-restarting"));
    assert!(
        has("nowhere", "node-placement-no-node"),
        "the sandbox's nodes are not in zone-c"
    );
    assert!(
        !findings.iter().any(|f| f["name"] == "web"),
        "web follows every practice: {findings:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_scopes_by_namespace_and_selector() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(2))
        .await
        .expect("sandbox starts");
    let kubeconfig = sandbox.kubeconfig();
    let _ = kubectl(&kubeconfig, &["create", "namespace", "shop"]);
    let _ = kubectl(&kubeconfig, &["create", "namespace", "empty"]);
    let good = examples().join("good");
    let _ = kubectl(&kubeconfig, &["apply", "-f", good.to_str().unwrap()]);

    let out = run_plugin("kubectl-vm_audit", &kubeconfig, &["-n", "empty", "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a namespace with no VMs is not an error"
    );
    assert_eq!(json(&out)["summary"]["objects"], 0);

    let out = run_plugin(
        "kubectl-vm_audit",
        &kubeconfig,
        &["-n", "shop", "-l", "app=web", "-o", "json"],
    );
    let doc = json(&out);
    assert_eq!(doc["summary"]["objects"], 1, "{doc:#}");

    let out = run_plugin("kubectl-vm_audit", &kubeconfig, &["--context", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("context \"nope\" does not exist"));
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vm-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_only_role_is_enough_and_a_missing_one_is_named_up_front() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(2))
        .await
        .expect("sandbox starts");
    let admin = sandbox.kubeconfig();
    let _ = kubectl(&admin, &["create", "namespace", "shop"]);
    let good = examples().join("good");
    let _ = kubectl(&admin, &["apply", "-f", good.to_str().unwrap()]);
    // A kubeconfig whose user entry impersonates jane (`as: jane`): the refusal names her, as
    // it does for `--as jane`.
    let jane = vm_e2e::impersonating(&admin, "jane");

    let out = run_plugin("kubectl-vm_audit", &jane, &["-n", "shop"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("17 missing permissions as user jane; nothing was changed")
            && stderr.contains("\n  list virtualmachines.kubevirt.io in namespace shop\n")
            && stderr.contains("kubectl auth can-i list"),
        "{stderr}"
    );

    let role = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac/vm-audit.yaml");
    let _ = kubectl(&admin, &["apply", "-f", role.to_str().unwrap()]);
    let _ = kubectl(
        &admin,
        &[
            "create",
            "clusterrolebinding",
            "vm-audit-jane",
            "--clusterrole=vm-audit",
            "--user=jane",
        ],
    );
    let out = run_plugin("kubectl-vm_audit", &jane, &["-A", "-o", "json"]);
    // 1 is fine: web's zone selector matches none of the sandbox's unlabelled nodes.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        json(&out)["summary"]["objects"].as_u64().map(|n| n >= 2),
        Some(true)
    );
}
