//! Bad input to every plugin, each refused with exit status 2 and a message that says what is
//! wrong and what to do: unknown flags, malformed node names, kubeconfigs that are missing or are
//! not kubeconfigs, contexts that do not exist, a server nobody answers on, and (on the sandbox)
//! credentials the API server rejects and nodes that do not exist, which change nothing.

use std::path::Path;
use std::process::Output;

use kubevirt_sim::{Sandbox, SandboxConfig};
use vm_e2e::{kubectl, plugin_bin, run_plugin};

/// Each plugin with the arguments that name a node, where it takes one.
const PLUGINS: [(&str, &[&str]); 3] = [
    ("kubectl-vm_audit", &[]),
    ("kubectl-vm_drain_safe", &["node-1"]),
    ("kubectl-vm_recover", &["--from-node", "node-1"]),
];

/// Runs `plugin` with `args`, no kubeconfig from the environment and no home directory.
fn run(plugin: &str, args: &[&str]) -> Output {
    std::process::Command::new(plugin_bin(plugin))
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("plugin runs")
}

/// Asserts exit status 2 and that stderr holds every one of `words`; returns stderr.
fn refused(out: &Output, words: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for word in words {
        assert!(stderr.contains(word), "{word:?} missing from: {stderr}");
    }
    stderr
}

fn with_node<'a>(node_args: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    node_args.iter().chain(rest).copied().collect()
}

#[test]
fn without_a_cluster_bad_flags_and_kubeconfigs_exit_2_naming_the_problem() {
    let dir = tempfile_dir("no-cluster");
    let nowhere = dir.join("nowhere.kubeconfig");
    std::fs::write(
        &nowhere,
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\nclusters:\n- name: dead\n  cluster: {server: 'https://127.0.0.1:1'}\n\
contexts:\n- name: dead\n  context: {cluster: dead, user: u}\nusers:\n- name: u\n  user: {token: t}\n",
    )
    .unwrap();
    let garbage = dir.join("garbage.kubeconfig");
    std::fs::write(&garbage, "clusters: [\n").unwrap();
    let empty = dir.join("empty.kubeconfig");
    std::fs::write(&empty, "").unwrap();
    let (nowhere, garbage, empty) = (
        nowhere.to_str().unwrap(),
        garbage.to_str().unwrap(),
        empty.to_str().unwrap(),
    );
    let dir_path = dir.to_str().unwrap();

    for (plugin, node) in PLUGINS {
        refused(
            &run(plugin, &with_node(node, &["--frobnicate"])),
            &["unexpected argument '--frobnicate'", "Usage:"],
        );
        refused(
            &run(plugin, &with_node(node, &["--kubeconfig", "absent.kubeconfig"])),
            &[
                "kubeconfig absent.kubeconfig: cannot be read: no such file",
                "hint: check --kubeconfig",
            ],
        );
        refused(
            &run(plugin, &with_node(node, &["--kubeconfig", dir_path])),
            &["cannot be read: it is a directory"],
        );
        refused(
            &run(plugin, &with_node(node, &["--kubeconfig", garbage])),
            &["garbage.kubeconfig: not a valid kubeconfig: line 1"],
        );
        refused(
            &run(plugin, &with_node(node, &["--kubeconfig", empty])),
            &["empty.kubeconfig: it defines no context"],
        );
        let stderr = refused(
            &run(plugin, &with_node(node, &[])),
            &["kubeconfig", "cannot be read: no such file"],
        );
        assert!(stderr.contains("/nonexistent/.kube/config"), "{stderr}");
        refused(
            &run(
                plugin,
                &with_node(node, &["--kubeconfig", nowhere, "--context", "prod"]),
            ),
            &["context \"prod\" does not exist (contexts: dead)"],
        );
        refused(
            &run(plugin, &with_node(node, &["--kubeconfig", nowhere])),
            &[
                "cannot reach the API server",
                "hint: check that the cluster is up",
            ],
        );
    }
    for args in [
        vec!["Node-1"],
        vec!["../nodes/node-1"],
        vec![""],
        vec!["node-1", "--timeout", "soon"],
    ] {
        refused(&run("kubectl-vm_drain_safe", &args), &["invalid value"]);
    }
    refused(
        &run("kubectl-vm_recover", &["--from-node", "node_1"]),
        &["invalid value 'node_1' for '--from-node <NODE>': not a node name"],
    );
    refused(&run("kubectl-vm_recover", &[]), &["--from-node <NODE>"]);
    refused(&run("kubectl-vm_drain_safe", &[]), &["<NODE>"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a refused run must leave as it was: the nodes' specs, the VMs, VMIs, migrations and
/// Leases (the drain lock is one).
fn cluster_state(kubeconfig: &Path) -> String {
    let specs = kubectl(
        kubeconfig,
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec}{\"\\n\"}{end}",
        ],
    );
    let objects = kubectl(
        kubeconfig,
        &[
            "get",
            "vm,vmi,vmim,leases",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}@{.metadata.resourceVersion}{\"\\n\"}{end}",
        ],
    );
    // Node Leases are renewed by the kubelets all the time; only their names matter.
    let objects: Vec<&str> = objects
        .lines()
        .map(|l| {
            if l.starts_with("Lease/node-") {
                l.split('@').next().unwrap()
            } else {
                l
            }
        })
        .collect();
    format!("{specs}\n{}", objects.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_sandbox_wrong_nodes_contexts_and_credentials_exit_2_and_change_nothing() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(2))
        .await
        .expect("sandbox starts");
    let kubeconfig = sandbox.kubeconfig();
    let before = cluster_state(&kubeconfig);

    // A node that does not exist: named, with the command that lists the real ones.
    let out = run_plugin("kubectl-vm_drain_safe", &kubeconfig, &["no-such-node", "--yes"]);
    refused(
        &out,
        &[
            "node no-such-node does not exist",
            "hint: list the nodes with `kubectl get nodes`",
        ],
    );
    let out = run_plugin(
        "kubectl-vm_drain_safe",
        &kubeconfig,
        &["no-such-node", "--uncordon"],
    );
    refused(
        &out,
        &[
            "nodes \"no-such-node\" not found",
            "hint: check the name: `kubectl get nodes`",
        ],
    );
    for extra in [&[][..], &["--confirm-fenced"], &["--cleanup"]] {
        let args: Vec<&str> = ["--from-node", "no-such-node"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let out = run_plugin("kubectl-vm_recover", &kubeconfig, &args);
        refused(&out, &["node no-such-node does not exist", "kubectl get nodes"]);
    }

    // A context that the kubeconfig does not have.
    for (plugin, node) in PLUGINS {
        let out = run_plugin(plugin, &kubeconfig, &with_node(node, &["--context", "staging"]));
        refused(&out, &["context \"staging\" does not exist"]);
    }

    // A token the API server does not accept (expired, revoked, mistyped): 401, said as such.
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let token_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("token:"))
        .expect("the sandbox's user has a token");
    let indent = &token_line[..token_line.len() - token_line.trim_start().len()];
    let wrong = kubeconfig.with_file_name("kubeconfig-wrong-token");
    std::fs::write(
        &wrong,
        text.replace(token_line, &format!("{indent}token: expired-or-wrong")),
    )
    .unwrap();
    for (plugin, node) in PLUGINS {
        // The node plugins would act with --yes, had the credentials been good.
        let yes: &[&str] = if node.is_empty() { &[] } else { &["--yes"] };
        let out = run_plugin(plugin, &wrong, &with_node(node, yes));
        let stderr = refused(
            &out,
            &[
                "rejected the credentials (HTTP 401 Unauthorized)",
                "hint:",
                "log in again",
            ],
        );
        assert!(!stderr.contains("{\"kind\""), "a raw HTTP body: {stderr}");
    }

    assert_eq!(
        cluster_state(&kubeconfig),
        before,
        "a refused run changed the cluster"
    );
}

fn tempfile_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vm-e2e-bad-input-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
