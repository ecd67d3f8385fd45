//! Least privilege, rule by rule: each plugin's ClusterRole in `deploy/rbac/` is bound to a
//! fresh user with one of its rules removed, and the plugin's full run must refuse up front
//! (exit 2), name a permission of the removed rule, and leave the cluster as it was. Together
//! with the full runs under exactly each role (audit_live, drain_execute, recover and the end of
//! this test), this shows every rule is needed and the roles are enough.

use std::path::{Path, PathBuf};

use kubevirt_sim::{Sandbox, SandboxConfig};
use serde_json::Value;
use vm_e2e::{
    always_vm as vm, impersonating, kubectl, node_ready, run_plugin, start_vms_on_node_1, vmi_placements,
    wait_until,
};

fn role_file(role: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../deploy/rbac/{role}.yaml"))
}

/// What the objects a run could touch look like: their resourceVersions, and node-1's spec
/// (cordon, taints). Node status keeps changing under the node controllers; the tools never
/// write it.
fn cluster_state(kc: &Path) -> String {
    kubectl(
        kc,
        &[
            "get",
            "vm,vmi,vmim,pods,volumeattachments",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion} {end}",
        ],
    ) + &kubectl(kc, &["get", "node", "node-1", "-o", "jsonpath={.spec}"])
        + &kubectl(kc, &["get", "lease", "-n", "kube-system", "-o", "name"])
}

/// How a refusal names the grants of `rule`: `verb plural.group/sub`.
fn grants_of(rule: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for group in rule["apiGroups"].as_array().unwrap() {
        let group = group.as_str().unwrap();
        for resource in rule["resources"].as_array().unwrap() {
            let (plural, sub) = resource
                .as_str()
                .unwrap()
                .split_once('/')
                .unwrap_or((resource.as_str().unwrap(), ""));
            let mut name = plural.to_string();
            if !group.is_empty() {
                name = format!("{name}.{group}");
            }
            if !sub.is_empty() {
                name = format!("{name}/{sub}");
            }
            for verb in rule["verbs"].as_array().unwrap() {
                names.push(format!("{} {name} ", verb.as_str().unwrap()));
            }
        }
    }
    names
}

/// Runs `plugin args` once per rule of `role`, as a user bound to the role without that rule;
/// each run must refuse before changing anything and name one of the rule's grants.
fn each_rule_is_needed(kc: &Path, role: &str, plugin: &str, args: &[&str]) {
    let full: Value = serde_json::from_str(&kubectl(
        kc,
        &[
            "create",
            "--dry-run=client",
            "-o",
            "json",
            "-f",
            role_file(role).to_str().unwrap(),
        ],
    ))
    .unwrap();
    let rules = full["rules"].as_array().unwrap();
    assert!(rules.len() >= 5, "{role} has its rules");
    for (index, rule) in rules.iter().enumerate() {
        let name = format!("{role}-without-{index}");
        let mut reduced = full.clone();
        reduced["metadata"] = serde_json::json!({"name": name});
        reduced["rules"].as_array_mut().unwrap().remove(index);
        let file = std::env::temp_dir().join(format!("{name}-{}.json", std::process::id()));
        std::fs::write(&file, reduced.to_string()).unwrap();
        let _ = kubectl(kc, &["apply", "-f", file.to_str().unwrap()]);
        let _ = std::fs::remove_file(&file);
        let _ = kubectl(
            kc,
            &[
                "create",
                "clusterrolebinding",
                &name,
                &format!("--clusterrole={name}"),
                &format!("--user={name}"),
            ],
        );
        let before = cluster_state(kc);
        let out = run_plugin(plugin, &impersonating(kc, &name), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let context = format!(
            "{plugin} {args:?} without rule {index} of {role} ({rule})\n{}\n--- stderr ---\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(out.status.code(), Some(2), "{context}");
        assert!(
            stderr.contains("missing permission") && stderr.contains("nothing was changed"),
            "{context}"
        );
        assert!(
            grants_of(rule)
                .iter()
                .any(|grant| stderr.contains(grant.as_str())),
            "the refusal names a grant of the removed rule: {context}"
        );
        assert!(stderr.contains("kubectl auth can-i"), "{context}");
        assert!(stderr.contains(&format!("deploy/rbac/{role}.yaml")), "{context}");
        assert_eq!(cluster_state(kc), before, "nothing changed: {context}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_of_every_role_is_needed_and_checked_before_anything_changes() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    start_vms_on_node_1(&kc, &[vm("a"), vm("b")].concat(), 2);

    each_rule_is_needed(&kc, "vm-audit", "kubectl-vm_audit", &["-A"]);
    // The fullest run of vm-drain-safe is a rolling round: a drain of each node (which also
    // checks what --uncordon will need: nobody is left with a node they cannot give back), and
    // the round's record of its progress.
    each_rule_is_needed(
        &kc,
        "vm-drain-safe",
        "kubectl-vm_drain_safe",
        &["--rolling", "node-1", "--exec", "true", "--yes"],
    );

    // node-1 loses power; once its kubelet's Lease has expired, vm-recover fences.
    sandbox.node_down("node-1").unwrap();
    wait_until("node-1 is not Ready", || node_ready(&kc, "node-1") != "True").await;
    wait_until("node-1 is tainted unreachable:NoExecute", || {
        kubectl(&kc, &["get", "node", "node-1", "-o", "jsonpath={.spec.taints}"]).contains("NoExecute")
    })
    .await;
    let recover = [
        "--from-node",
        "node-1",
        "--confirm-fenced",
        "--start-stopped",
        "--yes",
    ];
    each_rule_is_needed(&kc, "vm-recover", "kubectl-vm_recover", &recover);

    // And the whole role is enough: the same run recovers both VMs.
    let _ = kubectl(&kc, &["apply", "-f", role_file("vm-recover").to_str().unwrap()]);
    let _ = kubectl(
        &kc,
        &[
            "create",
            "clusterrolebinding",
            "recoverer",
            "--clusterrole=vm-recover",
            "--user=recoverer",
        ],
    );
    let out = run_plugin("kubectl-vm_recover", &impersonating(&kc, "recoverer"), &recover);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let placements = vmi_placements(&kc);
    assert_eq!(
        placements
            .iter()
            .filter(|p| p.contains("=Running/") && !p.ends_with("/node-1"))
            .count(),
        2,
        "{placements:?}"
    );
}
