//! Helpers for end-to-end tests: the plugins' binaries and the real kubectl, pointed at a sandbox.

pub mod scheduler_message;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The path of a workspace binary, built next to the test executable.
///
/// # Panics
/// When the binary has not been built; the message says how to build it.
#[must_use]
pub fn plugin_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build --workspace` (or `cargo test --workspace`)",
        bin.display()
    );
    bin
}

/// A temp file path no other call makes, in this process or another: tests of one binary run
/// in parallel in one process, each with its own sandbox, and may write the same kind of file.
#[must_use]
fn unique_temp_file(tag: &str, extension: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("{tag}-{}-{n}.{extension}", std::process::id()))
}

/// `kubectl apply` of `manifests` (YAML text), through a temp file removed afterwards.
pub fn apply_manifests(kubeconfig: &Path, manifests: &str) {
    let file = unique_temp_file("vm-e2e-apply", "yaml");
    std::fs::write(&file, manifests).expect("temp file writable");
    let _ = kubectl(
        kubeconfig,
        &["apply", "-f", file.to_str().expect("UTF-8 temp path")],
    );
    let _ = std::fs::remove_file(&file);
}

/// Runs a plugin binary against `kubeconfig` with a clean environment.
#[must_use]
pub fn run_plugin(name: &str, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(plugin_bin(name))
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("plugin runs")
}

/// A finished process for an assertion message: its exit status, stdout and stderr.
#[must_use]
pub fn output_text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the real kubectl against `kubeconfig`; panics with its stderr when it fails.
#[must_use]
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
}

/// The PodDisruptionBudget API version to write fixtures in, from the server's discovery
/// (`kubectl api-versions`): `policy/v1` where it is served (1.21 and later; 1.25 removed
/// `policy/v1beta1`), else `policy/v1beta1` (1.20, the sandbox's).
#[must_use]
pub fn pdb_api_version(kubeconfig: &Path) -> &'static str {
    pdb_api_version_of(&kubectl(kubeconfig, &["api-versions"]))
}

/// [`pdb_api_version`] for the output of `kubectl api-versions`.
#[must_use]
pub fn pdb_api_version_of(api_versions: &str) -> &'static str {
    if api_versions.lines().any(|l| l.trim() == "policy/v1") {
        "policy/v1"
    } else {
        "policy/v1beta1"
    }
}

/// The repository's `examples/` directory.
#[must_use]
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A copy of `kubeconfig` whose user impersonates `user` (the sandbox's admin may impersonate
/// anyone), for testing with exactly the rights of an RBAC role.
#[must_use]
pub fn impersonating(kubeconfig: &Path, user: &str) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig readable");
    let mut patched = Vec::new();
    for line in text.lines() {
        patched.push(line.to_string());
        if line.trim_start().starts_with("token:") {
            let indent = &line[..line.len() - line.trim_start().len()];
            patched.push(format!("{indent}as: {user}"));
        }
    }
    let path = kubeconfig.with_file_name(format!("kubeconfig-as-{user}"));
    std::fs::write(&path, patched.join("\n")).expect("kubeconfig writable");
    path
}

/// Applies `manifests` with node-2 and node-3 cordoned, waits (up to 90 s) until `count` VMIs
/// run on node-1, then uncordons the others: a node full of VMs, ready to be drained.
pub fn start_vms_on_node_1(kubeconfig: &Path, manifests: &str, count: usize) {
    let _ = kubectl(kubeconfig, &["cordon", "node-2", "node-3"]);
    apply_manifests(kubeconfig, manifests);
    for _ in 0..90 {
        let phases = kubectl(
            kubeconfig,
            &[
                "get",
                "vmi",
                "-A",
                "-o",
                "jsonpath={range .items[*]}{.status.phase}/{.status.nodeName} {end}",
            ],
        );
        if phases
            .split_whitespace()
            .filter(|p| *p == "Running/node-1")
            .count()
            >= count
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let _ = kubectl(kubeconfig, &["uncordon", "node-2", "node-3"]);
}

/// `kubectl vm-drain-safe NODE --dry-run -o json`: the exit status and the plan.
///
/// # Panics
/// When the output is not JSON; the message carries the plugin's stderr.
#[must_use]
pub fn drain_plan(kubeconfig: &Path, node: &str) -> (Option<i32>, serde_json::Value) {
    let out = run_plugin(
        "kubectl-vm_drain_safe",
        kubeconfig,
        &[node, "--dry-run", "-o", "json"],
    );
    let plan = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the plan is JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), plan)
}

/// The phase of every VirtualMachineInstanceMigration in the default namespace.
#[must_use]
pub fn migration_phases(kubeconfig: &Path) -> Vec<String> {
    kubectl(
        kubeconfig,
        &[
            "get",
            "vmim",
            "-o",
            "jsonpath={range .items[*]}{.status.phase} {end}",
        ],
    )
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

/// `name=phase/node` of every VMI in the default namespace.
#[must_use]
pub fn vmi_placements(kubeconfig: &Path) -> Vec<String> {
    kubectl(
        kubeconfig,
        &[
            "get",
            "vmi",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase}/{.status.nodeName} {end}",
        ],
    )
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

/// The status of a node's Ready condition: `True`, `False` or `Unknown`.
#[must_use]
pub fn node_ready(kubeconfig: &Path, node: &str) -> String {
    kubectl(
        kubeconfig,
        &[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
    )
}

/// Polls `check` every second, up to two minutes.
///
/// # Panics
/// When `check` never holds, naming `what`.
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..120 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The `domain` and `networks` lines of a test VM's template spec (indented for
/// `spec.template.spec`): `memory` requested, and the pod network on a masquerade interface,
/// as KubeVirt's examples declare it. A VM that declares no interface gets the cluster's
/// default binding (bridge), which KubeVirt does not live-migrate.
#[must_use]
pub fn vm_domain(memory: &str) -> String {
    format!(
        "      domain: {{resources: {{requests: {{memory: {memory}}}}}, devices: {{interfaces: [{{name: default, masquerade: {{}}}}]}}}}\n      \
         networks: [{{name: default, pod: {{}}}}]\n"
    )
}

/// A VirtualMachine in `default` that runs Always, live-migrates on eviction and asks for 1Gi
/// on a masquerade pod interface ([`vm_domain`]): the plain VM of the node-operation tests.
#[must_use]
pub fn always_vm(name: &str) -> String {
    format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: {name}, namespace: default}}\n\
spec:\n  runStrategy: Always\n  template:\n    spec:\n      evictionStrategy: LiveMigrate\n{}",
        vm_domain("1Gi")
    )
}

/// The resourceVersion of every pod, VM, VMI, migration and PDB, and every node's spec (node
/// status and heartbeat annotations keep changing under the kubelets, which the tool never
/// writes).
#[must_use]
pub fn resource_versions(kubeconfig: &Path) -> String {
    let objects = kubectl(
        kubeconfig,
        &[
            "get",
            "pods,vm,vmi,vmim,pdb",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}",
        ],
    );
    let nodes = kubectl(
        kubeconfig,
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec} {end}",
        ],
    );
    objects + &nodes
}

/// Applies `manifests` with every node of `nodes` but `node` cordoned, waits until the VMIs
/// named in `names` run on `node`, then uncordons the others: how the tests put VMs on the
/// node they need without pinning them there.
///
/// # Panics
/// When the VMs do not all run on `node` within the wait.
pub async fn start_on(kubeconfig: &Path, node: &str, nodes: &[&str], manifests: &str, names: &[&str]) {
    let others: Vec<&str> = nodes.iter().copied().filter(|n| *n != node).collect();
    let _ = kubectl(kubeconfig, &[&["cordon"], others.as_slice()].concat());
    apply_manifests(kubeconfig, manifests);
    wait_until("the VMs run on their node", || {
        let placed = vmi_placements(kubeconfig);
        names
            .iter()
            .all(|n| placed.contains(&format!("{n}=Running/{node}")))
    })
    .await;
    let _ = kubectl(kubeconfig, &[&["uncordon"], others.as_slice()].concat());
}

#[cfg(test)]
mod tests {
    /// Discovery as 1.20 answers it (policy/v1beta1 only), as 1.21 to 1.24 (both), and as
    /// 1.25 and later (policy/v1 only).
    #[test]
    fn the_pdb_version_is_v1_wherever_it_is_served() {
        let v1_20 = "apps/v1\nbatch/v1\nbatch/v1beta1\npolicy/v1beta1\nv1\n";
        let v1_21 = "apps/v1\nbatch/v1\npolicy/v1\npolicy/v1beta1\nv1\n";
        let v1_36 = "apps/v1\nbatch/v1\npolicy/v1\nv1\n";
        assert_eq!(super::pdb_api_version_of(v1_20), "policy/v1beta1");
        assert_eq!(super::pdb_api_version_of(v1_21), "policy/v1");
        assert_eq!(super::pdb_api_version_of(v1_36), "policy/v1");
    }

    /// The VM's domain sits under `spec.template.spec`: a string continuation in the template
    /// once ate its indentation, which made it a top-level key and the VMs ask for no memory.
    #[test]
    fn the_plain_vm_asks_for_its_memory_in_its_template() {
        let vm = super::always_vm("web");
        assert!(
            vm.contains("\n    spec:\n      evictionStrategy: LiveMigrate\n      domain: {resources: {requests: {memory: 1Gi}}, devices: {interfaces: [{name: default, masquerade: {}}]}}\n      networks: [{name: default, pod: {}}]\n"),
            "{vm}"
        );
    }
}
