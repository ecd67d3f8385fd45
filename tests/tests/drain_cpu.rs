//! Drains on a cluster with two CPU vendors and two Intel generations: a host-model VM's
//! migration target must have its source node's vendor, host model and required features, so
//! the plan sends the VMs of a Skylake node only to the node of the newer generation that can
//! take them, and the drain finishes there; a VM started on that newer node has nowhere to go
//! (the older Intel lacks its model and features, the AMD node its vendor), so that drain is
//! blocked at pre-flight, says why, and changes nothing.

use kubevirt_sim::nodes::{DEFAULT_CPU, NodeTemplate, cpu_labels};
use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::Value;
use vm_e2e::{always_vm, drain_plan, resource_versions, run_plugin, vmi_placements};

/// The newer Intel generation: it offers Skylake as a migration model and every feature a
/// Skylake host model requires, plus `pku`, which Skylake nodes lack.
const CASCADELAKE: &str = "vendor=Intel model=Cascadelake-Server \
    features=vmx,ss,tsc_adjust,clflushopt,umip,md-clear,ssbd,xsaves,pku \
    models=Skylake-Client-IBRS,Broadwell-noTSX-IBRS,Haswell-noTSX-IBRS";

fn config() -> SandboxConfig {
    let mut skylake = NodeTemplate::worker("skylake-1", "16", "16Gi", "110");
    skylake.labels = cpu_labels(DEFAULT_CPU).unwrap();
    let mut cascadelake = NodeTemplate::worker("cascadelake-1", "16", "16Gi", "110");
    cascadelake.labels = cpu_labels(CASCADELAKE).unwrap();
    let mut milan = NodeTemplate::worker("milan-1", "16", "16Gi", "110");
    milan.labels =
        cpu_labels("vendor=AMD model=EPYC-Milan features=svm,ibpb,virt-ssbd models=EPYC-Rome").unwrap();
    SandboxConfig {
        nodes: vec![skylake, cascadelake, milan],
        ..SandboxConfig::default()
    }
}

/// Applies `manifests` on `node` (see [`vm_e2e::start_on`]).
async fn start_on(kc: &std::path::Path, node: &str, manifests: &str, names: &[&str]) {
    vm_e2e::start_on(
        kc,
        node,
        &["skylake-1", "cascadelake-1", "milan-1"],
        manifests,
        names,
    )
    .await;
}

fn vm_entry<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{name} in the plan: {plan:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_model_vms_drain_to_a_compatible_cpu_and_are_blocked_where_there_is_none() {
    let sandbox = Sandbox::start(config()).await.expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let names = ["web-1", "web-2", "web-3"];
    let manifests: String = names.iter().map(|n| always_vm(n)).collect();
    start_on(&kc, "skylake-1", &manifests, &names).await;

    // Only the Cascadelake node can take Skylake host-model guests; the plan says so.
    let (code, plan) = drain_plan(&kc, "skylake-1");
    assert_eq!(code, Some(0), "{plan:#}");
    for name in names {
        assert_eq!(vm_entry(&plan, name)["target"], "cascadelake-1", "{plan:#}");
    }
    let out = run_plugin("kubectl-vm_drain_safe", &kc, &["skylake-1", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let placed = vmi_placements(&kc);
    for name in names {
        assert!(
            placed.contains(&format!("{name}=Running/cascadelake-1")),
            "{placed:?}"
        );
    }
    let out = run_plugin("kubectl-vm_drain_safe", &kc, &["skylake-1", "--uncordon"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A VM started on the Cascadelake node needs Cascadelake and pku: no other node has
    // both, and the AMD node is another vendor. The migrated ones carry Skylake's selectors
    // from their pods and could go back.
    start_on(&kc, "cascadelake-1", &always_vm("db"), &["db"]).await;
    let before = resource_versions(&kc);
    let (code, plan) = drain_plan(&kc, "cascadelake-1");
    assert_eq!(code, Some(1), "{plan:#}");
    let db = vm_entry(&plan, "db");
    assert_eq!(db["action"], "blocked", "{plan:#}");
    let reasons = db["reasons"].to_string();
    for expected in [
        "nodeSelector cpu-feature.node.kubevirt.io/pku, cpu-model-migration.node.kubevirt.io/Cascadelake-Server \
         (host-model on node cascadelake-1) does not match node skylake-1",
        "cpu-vendor.node.kubevirt.io/Intel (the CPU vendor of node cascadelake-1)",
    ] {
        assert!(reasons.contains(expected), "{expected} in {reasons}");
    }
    for name in names {
        assert_eq!(vm_entry(&plan, name)["target"], "skylake-1", "{plan:#}");
    }

    // Executed, a blocked plan stops before the first change.
    let out = run_plugin("kubectl-vm_drain_safe", &kc, &["cascadelake-1", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(resource_versions(&kc), before, "nothing changed");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("BLOCKED")
            || String::from_utf8_lossy(&out.stderr).contains("blocked"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
