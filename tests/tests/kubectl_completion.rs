//! kubectl completes the plugins' arguments through the `kubectl_complete-*` executables of
//! `completions/kubectl/` (kubectl 1.26 and newer): the real `kubectl __complete`, with the
//! plugins and those executables on PATH, offers the sandbox's node names for the NODE of
//! vm-drain-safe and the `--from-node` of vm-recover.

use std::path::{Path, PathBuf};
use std::process::Command;

use kubevirt_sim::{Sandbox, SandboxConfig};
use vm_e2e::plugin_bin;

/// `kubectl __complete ARGS...` with the plugins and their completion executables first on
/// PATH and `KUBECONFIG` set as in the user's shell; returns the candidates and the directive.
fn complete(kubeconfig: Option<&Path>, args: &[&str]) -> (Vec<String>, String) {
    let plugins = plugin_bin("kubectl-vm_drain_safe")
        .parent()
        .expect("target/<profile>")
        .to_path_buf();
    let executables = Path::new(env!("CARGO_MANIFEST_DIR")).join("../completions/kubectl");
    let path = std::env::join_paths([plugins, executables].into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let mut cmd = Command::new("kubectl");
    cmd.env("PATH", path).arg("__complete").args(args);
    match kubeconfig {
        Some(kc) => cmd.env("KUBECONFIG", kc),
        None => cmd.env_remove("KUBECONFIG"),
    };
    let out = cmd.output().expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl __complete {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(str::to_string)
        .collect();
    let directive = lines.pop().unwrap_or_default();
    (lines, directive)
}

/// The first field of each candidate (a tab separates a description).
fn values(candidates: &[String]) -> Vec<&str> {
    candidates
        .iter()
        .map(|c| c.split('\t').next().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_names_complete_from_the_cluster() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(3))
        .await
        .expect("sandbox starts");
    let kc = sandbox.kubeconfig();
    let nodes = ["node-1", "node-2", "node-3"];

    // kubectl vm-drain-safe <TAB>: the NODE, from the cluster of $KUBECONFIG.
    let (candidates, directive) = complete(Some(&kc), &["vm-drain-safe", ""]);
    assert_eq!(values(&candidates), nodes, "{candidates:?}");
    assert_eq!(directive, ":4", "no file names after the node names");

    // kubectl vm-drain-safe node-<TAB> keeps the ones that match.
    let (candidates, _) = complete(Some(&kc), &["vm-drain-safe", "--dry-run", "node-2"]);
    assert_eq!(values(&candidates), ["node-2"]);

    // kubectl vm-recover --kubeconfig FILE --from-node <TAB>: the cluster of the --kubeconfig
    // typed on the line, with no KUBECONFIG in the environment.
    let kc_text = kc.to_str().expect("UTF-8 path");
    let (candidates, directive) = complete(None, &["vm-recover", "--kubeconfig", kc_text, "--from-node", ""]);
    assert_eq!(values(&candidates), nodes, "{candidates:?}");
    assert_eq!(directive, ":4");
    let (candidates, _) = complete(
        None,
        &[
            "vm-recover",
            &format!("--kubeconfig={kc_text}"),
            "--from-node=node-3",
        ],
    );
    assert_eq!(values(&candidates), ["node-3"]);

    // Namespaces for vm-audit -n, also from the cluster.
    let (candidates, _) = complete(Some(&kc), &["vm-audit", "-n", "kube-"]);
    assert!(values(&candidates).contains(&"kube-system"), "{candidates:?}");

    // Flags when the word starts with a dash; fixed values for -o.
    let (candidates, directive) = complete(Some(&kc), &["vm-drain-safe", "node-1", "--dr"]);
    assert_eq!(values(&candidates), ["--dry-run"]);
    assert_eq!(directive, ":4");
    let (candidates, _) = complete(Some(&kc), &["vm-recover", "-o", ""]);
    assert_eq!(values(&candidates), ["table", "wide", "json", "yaml"]);

    // A file for --kubeconfig: no candidates, and the shell's own file completion (:0).
    let (candidates, directive) = complete(Some(&kc), &["vm-drain-safe", "--kubeconfig", ""]);
    assert!(candidates.is_empty(), "{candidates:?}");
    assert_eq!(directive, ":0");

    // With the cluster gone (its kubeconfig kept), completion offers nothing rather than an error.
    let kept = std::env::temp_dir().join(format!("vm-e2e-completion-{}.kubeconfig", std::process::id()));
    std::fs::copy(&kc, &kept).expect("kubeconfig copied");
    drop(sandbox);
    let (candidates, directive) = complete(Some(&kept), &["vm-drain-safe", ""]);
    let _ = std::fs::remove_file(&kept);
    assert!(candidates.is_empty(), "{candidates:?}");
    assert_eq!(directive, ":4");
}

/// The generated executables are where the test looks for them, and executable.
#[test]
fn the_completion_executables_are_checked_in() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../completions/kubectl");
    for plugin in ["vm_audit", "vm_drain_safe", "vm_recover"] {
        let file = dir.join(format!("kubectl_complete-{plugin}"));
        let mode = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{} is not executable", file.display());
    }
}
