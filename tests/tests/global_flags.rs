//! kubectl's global flags on the sandbox: `--as` makes each plugin work with the rights of the
//! impersonated user, and its up-front refusal names that user; `-s`, `--token` and
//! `--certificate-authority` reach the cluster without a kubeconfig, as kubectl does.

use std::path::Path;
use std::process::{Command, Output};

use kubevirt_sim::{Sandbox, SandboxConfig};
use vm_e2e::{examples, kubectl, output_text, plugin_bin, run_plugin};

/// `key: value` of the first line of `text` that has `key:`.
fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(key))
        .map(|rest| rest.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in the kubeconfig"))
}

/// `kubectl-vm_audit` with no kubeconfig at all, only the flags `args`.
fn audit_without_kubeconfig(args: &[&str]) -> Output {
    Command::new(plugin_bin("kubectl-vm_audit"))
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("plugin runs")
}

fn ended(out: &Output, codes: &[i32]) -> String {
    let text = output_text(out);
    assert!(
        out.status.code().is_some_and(|c| codes.contains(&c)),
        "expected exit {codes:?}: {text}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_checks_and_uses_the_rights_of_the_impersonated_user() {
    let sandbox = Sandbox::start(SandboxConfig::with_nodes(1))
        .await
        .expect("sandbox starts");
    let admin = sandbox.kubeconfig();
    let _ = kubectl(&admin, &["create", "namespace", "shop"]);
    let good = examples().join("good");
    let _ = kubectl(&admin, &["apply", "-f", good.to_str().unwrap()]);

    // jane is bound to nothing: each plugin refuses up front, naming her and what she lacks,
    // with `kubectl auth can-i` lines that check as her.
    for (plugin, args, lacking) in [
        (
            "kubectl-vm_audit",
            &["--as", "jane", "-n", "shop"][..],
            "\n  list virtualmachines.kubevirt.io in namespace shop\n",
        ),
        (
            "kubectl-vm_drain_safe",
            &["node-1", "--dry-run", "--as", "jane"][..],
            "\n  list nodes at cluster scope\n",
        ),
        (
            "kubectl-vm_recover",
            &["--from-node", "node-1", "--dry-run", "--as=jane"][..],
            "\n  get leases.coordination.k8s.io in namespace kube-node-lease\n",
        ),
    ] {
        let out = run_plugin(plugin, &admin, args);
        let stderr = ended(&out, &[2]);
        assert!(
            stderr.contains("missing permissions as user jane; nothing was changed:")
                && stderr.contains(lacking)
                && stderr.contains(" --as jane`"),
            "{plugin}: {stderr}"
        );
    }

    // The same run with the admin's own rights: a plan (blocked, with one node), no refusal.
    let out = run_plugin("kubectl-vm_drain_safe", &admin, &["node-1", "--dry-run"]);
    let _ = ended(&out, &[0, 1]);

    // Bound to the audit's role, jane may audit, with a group too; her rights decide.
    let role = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac/vm-audit.yaml");
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
    // 1 is fine: web's zone selector matches none of the sandbox's unlabelled nodes.
    let out = run_plugin("kubectl-vm_audit", &admin, &["--as", "jane", "-A"]);
    let _ = ended(&out, &[0, 1]);
    let out = run_plugin(
        "kubectl-vm_audit",
        &admin,
        &[
            "--as",
            "jane",
            "--as-group",
            "some-group",
            "-A",
            "--request-timeout=30s",
        ],
    );
    let _ = ended(&out, &[0, 1]);
    // Still not enough to drain, and the refusal says whose rights were checked.
    let out = run_plugin(
        "kubectl-vm_drain_safe",
        &admin,
        &["node-1", "--as", "jane", "--as-group", "some-group", "--yes"],
    );
    let stderr = ended(&out, &[2]);
    assert!(
        stderr.contains("missing permissions as user jane in group some-group; nothing was changed")
            && stderr.contains(" --as jane --as-group some-group`"),
        "{stderr}"
    );
    // kubectl's own rule: groups are impersonated only with a user.
    let out = run_plugin("kubectl-vm_audit", &admin, &["--as-group", "some-group", "-A"]);
    let stderr = ended(&out, &[2]);
    assert!(stderr.contains("--as <USER>"), "{stderr}");

    // No kubeconfig: the server, the token and the CA from flags, as kubectl takes them.
    let text = std::fs::read_to_string(&admin).unwrap();
    let server = field(&text, "server:");
    let token = field(&text, "token:");
    let ca = sandbox.state_dir().join("pki/apiserver/apiserver.crt");
    let ca = ca.to_str().unwrap();
    let out = audit_without_kubeconfig(&[
        "-s",
        &server,
        "--token",
        &token,
        "--certificate-authority",
        ca,
        "-A",
    ]);
    let _ = ended(&out, &[0, 1]);
    // Without a CA the server's certificate cannot be verified...
    let out = audit_without_kubeconfig(&["-s", &server, "--token", &token, "-A"]);
    let stderr = ended(&out, &[2]);
    assert!(stderr.contains("pass --certificate-authority FILE"), "{stderr}");
    // ...unless verification is turned off, explicitly, and that is said.
    let out = audit_without_kubeconfig(&[
        "-s",
        &server,
        "--token",
        &token,
        "--insecure-skip-tls-verify",
        "-A",
    ]);
    let stderr = ended(&out, &[0, 1]);
    assert!(stderr.contains("warning: --insecure-skip-tls-verify"), "{stderr}");
    let out = audit_without_kubeconfig(&[
        "-s",
        &server,
        "--token",
        &token,
        "--insecure-skip-tls-verify",
        "--certificate-authority",
        ca,
        "-A",
    ]);
    let stderr = ended(&out, &[2]);
    assert!(stderr.contains("give one of them"), "{stderr}");
    // A wrong token is the API server's 401, not a silent fallback to other credentials.
    let out = run_plugin("kubectl-vm_audit", &admin, &["--token", "not-the-token", "-A"]);
    let stderr = ended(&out, &[2]);
    assert!(stderr.contains("401"), "{stderr}");

    // --user and --cluster pick kubeconfig entries; an unknown one is named.
    let out = run_plugin(
        "kubectl-vm_audit",
        &admin,
        &["--user", "admin", "--cluster", "vm-sandbox", "-A"],
    );
    let _ = ended(&out, &[0, 1]);
    let out = run_plugin("kubectl-vm_audit", &admin, &["--user", "nobody", "-A"]);
    let stderr = ended(&out, &[2]);
    assert!(
        stderr.contains("user \"nobody\" (--user) does not exist (users: admin)"),
        "{stderr}"
    );

    // -v=N as kubectl spells it: 4 is debug.
    let out = run_plugin("kubectl-vm_audit", &admin, &["-A", "-v=4"]);
    let stderr = ended(&out, &[0, 1]);
    assert!(stderr.contains("DEBUG"), "{stderr}");
}
