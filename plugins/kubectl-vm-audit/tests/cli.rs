//! The `kubectl-vm_audit` binary as a user runs it: flags, formats, exit statuses, bad input.
//! No cluster: live-mode failures use kubeconfigs that point nowhere.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The binary with an environment that cannot change its behaviour: no kubeconfig, no colour.
fn audit() -> (Command, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-vm_audit"));
    cmd.env_clear()
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .env("PATH", std::env::var("PATH").unwrap());
    (cmd, home)
}

fn run_json(args: &[&str]) -> (Value, i32) {
    let (mut cmd, _home) = audit();
    let output = cmd.args(args).args(["-o", "json"]).output().unwrap();
    let doc = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (doc, output.status.code().unwrap())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn help_shows_kubectl_name_examples_and_exit_codes() {
    let (mut cmd, _home) = audit();
    cmd.arg("--help").assert().success().stdout(
        predicate::str::contains("kubectl vm-audit")
            .and(predicate::str::contains("Exit status"))
            .and(predicate::str::contains("--fail-on"))
            .and(predicate::str::contains("vm-audit/suppress-reason")),
    );
}

#[test]
fn compliant_examples_pass_with_exit_0() {
    let (doc, code) = run_json(&[
        "-f",
        path(&examples().join("good")),
        "-f",
        path(&examples().join("cluster")),
    ]);
    assert_eq!(code, 0);
    assert_eq!(doc["summary"]["objects"], 2);
    assert_eq!(doc["findings"].as_array().unwrap().len(), 0);
}

#[test]
fn json_report_follows_the_v1_contract() {
    let (doc, code) = run_json(&["-f", path(&examples())]);
    assert_eq!(code, 1, "examples/bad has errors");
    assert_eq!(doc["apiVersion"], "vm-audit/v1");
    assert_eq!(doc["kind"], "AuditReport");
    let findings = doc["findings"].as_array().unwrap();
    for severity in ["info", "warning", "error"] {
        let counted = findings.iter().filter(|f| f["severity"] == severity).count();
        assert_eq!(doc["summary"][severity], counted, "{severity}");
    }
    let categories = [
        "run-strategy",
        "resources",
        "eviction-strategy",
        "live-migration",
        "node-placement",
        "capacity",
        "probes",
        "configuration",
    ];
    for f in findings {
        for key in [
            "kind",
            "namespace",
            "name",
            "rule",
            "category",
            "severity",
            "message",
            "hint",
        ] {
            assert!(f[key].is_string(), "finding lacks {key}: {f}");
        }
        assert!(categories.contains(&f["category"].as_str().unwrap()), "{f}");
    }
    let db = findings.iter().find(|f| f["name"] == "db").unwrap();
    assert_eq!(db["rule"], "live-migrate-not-migratable");
    assert_eq!(db["kind"], "VirtualMachine");
    assert_eq!(db["namespace"], "shop");
    // Every object is counted, with or without findings (good: 2 VMs, bad: 10, drain: 4 in
    // fleet.yaml and 3 in the CPU tour's shop-on-*.yaml, datavolumes: 2, docs-shapes: 6).
    assert_eq!(doc["summary"]["objects"], 27);
}

#[test]
fn yaml_report_matches_json() {
    let (json, _) = run_json(&["-f", path(&examples().join("bad"))]);
    let (mut cmd, _home) = audit();
    let out = cmd
        .args(["-f", path(&examples().join("bad")), "-o", "yaml"])
        .output()
        .unwrap();
    let yaml: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(yaml, json);
}

#[test]
fn table_groups_findings_by_object_and_summarises() {
    let (mut cmd, _home) = audit();
    let out = cmd
        .args(["-f", path(&examples().join("bad"))])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("OBJECT") && text.contains("SEVERITY") && text.contains("RULE"),
        "{text}"
    );
    assert_eq!(
        text.matches("VirtualMachine shop/unsized").count(),
        1,
        "object named once per group:\n{text}"
    );
    assert!(text.contains("10 objects audited:"), "{text}");
    assert!(text.contains("(2 suppressed)"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes with NO_COLOR or a pipe"
    );
}

#[test]
fn wide_adds_category_hint_and_suppressed_findings() {
    let (mut cmd, _home) = audit();
    let out = cmd
        .args(["-f", path(&examples().join("bad")), "-o", "wide"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("CATEGORY") && text.contains("HINT"), "{text}");
    assert!(
        text.contains("suppressed") && text.contains("shop/batch"),
        "{text}"
    );
}

#[test]
fn sarif_is_2_1_0_with_rules_results_and_file_locations() {
    let (mut cmd, _home) = audit();
    let out = cmd
        .args(["-f", path(&examples().join("bad")), "-o", "sarif"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["version"], "2.1.0");
    let run = &doc["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "kubectl-vm-audit");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.len() >= 30);
    let results = run["results"].as_array().unwrap();
    let (json, _) = run_json(&["-f", path(&examples().join("bad"))]);
    assert_eq!(results.len(), json["findings"].as_array().unwrap().len());
    for r in results {
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], r["ruleId"]);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
    }
    let db = results
        .iter()
        .find(|r| r["message"]["text"].as_str().unwrap().contains("shop/db"))
        .unwrap();
    let loc = &db["locations"][0]["physicalLocation"];
    assert!(
        loc["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("not-migratable.yaml"),
        "{loc}"
    );
    assert_eq!(
        loc["region"]["startLine"], 10,
        "the VM document starts after the PVC and its `---`"
    );
}

#[test]
fn junit_has_a_case_per_object_and_failures_at_the_threshold() {
    let (mut cmd, _home) = audit();
    let (bad, cluster) = (examples().join("bad"), examples().join("cluster"));
    let bad_on_nodes = ["-f", path(&bad), "-f", path(&cluster)];
    let out = cmd.args(bad_on_nodes).args(["-o", "junit"]).output().unwrap();
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 10);
    // Objects with an error: db, huge, impatient, nowhere, unsized.
    assert!(
        xml.contains(r#"<testsuite name="vm-audit" tests="10" failures="5""#),
        "{xml}"
    );
    let (mut cmd, _home) = audit();
    let out = cmd
        .args(bad_on_nodes)
        .args(["-o", "junit", "--fail-on", "warning"])
        .output()
        .unwrap();
    let xml = String::from_utf8(out.stdout).unwrap();
    // Every object but `batch`, whose findings are all suppressed.
    assert!(xml.contains(r#"tests="10" failures="9""#), "{xml}");
}

#[test]
fn fail_on_sets_the_threshold_for_exit_1() {
    let warn_only = examples().join("bad/run-strategy.yaml");
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(&warn_only)]).assert().code(0);
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(&warn_only), "--fail-on", "warning"])
        .assert()
        .code(1);
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(&warn_only), "--fail-on", "info"])
        .assert()
        .code(1);
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(&warn_only), "--fail-on", "fatal"])
        .assert()
        .code(2);
}

#[test]
fn suppression_with_reason_is_honoured() {
    let (doc, _) = run_json(&["-f", path(&examples().join("bad/probes.yaml"))]);
    assert_eq!(doc["summary"]["suppressed"], 2);
    assert!(
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["name"] != "batch")
    );
    let suppressed = doc["suppressed"].as_array().unwrap();
    assert!(suppressed.iter().all(|f| f["name"] == "batch"));
}

#[test]
fn list_rules_and_explain() {
    let (mut cmd, _home) = audit();
    let out = cmd
        .arg("--list-rules")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for id in [
        "run-strategy-not-restarting",
        "live-migrate-not-migratable",
        "capacity-node-evacuation",
        "probes-liveness-missing",
    ] {
        assert!(text.contains(id), "{id} missing from:\n{text}");
    }
    let (mut cmd, _home) = audit();
    cmd.args(["--explain", "live-migrate-not-migratable"])
        .assert()
        .success()
        .stdout(predicate::str::contains("not live-migratable").and(predicate::str::contains("Fix:")));
    let (mut cmd, _home) = audit();
    cmd.args(["--explain", "live-migrate"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("did you mean"));
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: [oops\n",
    )
    .unwrap();
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(&file)])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("broken.yaml:").and(predicate::str::contains("error:")));
    let json = dir.path().join("broken.json");
    std::fs::write(
        &json,
        "{\"apiVersion\": \"v1\",\n \"kind\": \"Node\",\n \"metadata\": {\"name\": \"x\"]}\n",
    )
    .unwrap();
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(&json)])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("broken.json:3:"));
}

#[test]
fn not_an_object_and_wrong_field_types_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("list.yaml");
    std::fs::write(&file, "- just\n- a list\n").unwrap();
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(&file)])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a Kubernetes object"));
    std::fs::write(
        &file,
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: x}\nspec: {running: maybe}\n",
    )
    .unwrap();
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(&file)])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("field spec.running"));
}

#[test]
fn the_same_object_in_two_files_is_an_input_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let vm = "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: web, namespace: prod}\n\
spec: {runStrategy: Always}\n";
    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n";
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::fs::write(&a, format!("{node}---\n{vm}")).unwrap();
    std::fs::write(&b, vm).unwrap();
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(dir.path()), "-o", "json"])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(format!(
            "duplicate VirtualMachine prod/web: in {}:5 and in {}:1; each object may appear once",
            a.display(),
            b.display()
        )));
}

#[test]
fn with_audit_duplicates_each_copy_is_audited_apart_with_its_place() {
    // The same VM in two files: Always in a.yaml, Manual in b.yaml. KubeVirt would run
    // whichever is applied last, so each copy is judged as if it were the one applied.
    let dir = tempfile::tempdir().unwrap();
    let vm = |strategy: &str| {
        format!(
            "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {{name: web, namespace: prod}}\n\
spec: {{runStrategy: {strategy}}}\n"
        )
    };
    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n";
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::fs::write(&a, format!("{node}---\n{}", vm("Always"))).unwrap();
    std::fs::write(&b, vm("Manual")).unwrap();
    let (doc, code) = run_json(&["-f", path(dir.path()), "--audit-duplicates"]);
    assert_eq!(code, 1, "{doc:#}");
    let rules_of = |source: String| -> Vec<String> {
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["name"] == "web" && f["source"] == source.as_str())
            .map(|f| f["rule"].as_str().unwrap().to_string())
            .collect()
    };
    let first = rules_of(format!("{}:5", a.display()));
    let second = rules_of(format!("{}:1", b.display()));
    assert!(!first.is_empty() && !second.is_empty(), "{doc:#}");
    assert!(
        !first.contains(&"run-strategy-not-restarting".to_string()),
        "{first:?}"
    );
    assert!(
        second.contains(&"run-strategy-not-restarting".to_string()),
        "{second:?}"
    );
    // Never merged: every finding on web names its copy, and the other findings are the same
    // for both copies apart from the run strategy.
    let on_web = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "web");
    assert!(on_web.clone().all(|f| f["source"].is_string()), "{doc:#}");
    assert_eq!(first.len() + 1, second.len(), "{first:?} {second:?}");
    assert_eq!(
        doc["summary"]["objects"], 2,
        "the two copies of web (node-1 is context, not audited): {doc:#}"
    );

    // The table shows each copy with its place; without the flag the input is refused with
    // the way out.
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(dir.path()), "--audit-duplicates"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!(
            "VirtualMachine prod/web ({}:1)",
            b.display()
        )));
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(dir.path())])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("pass --audit-duplicates"));
}

#[test]
fn unknown_kinds_are_skipped_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.yaml");
    std::fs::write(
        &file,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
    )
    .unwrap();
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(&file)])
        .assert()
        .code(0)
        .stderr(predicate::str::contains("note:").and(predicate::str::contains("skipped Deployment web")))
        .stdout(predicate::str::contains("0 objects audited"));
}

#[test]
fn empty_directory_missing_file_and_binary_file_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(dir.path())])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no .yaml, .yml or .json files"));
    let (mut cmd, _home) = audit();
    cmd.args(["-f", "does-not-exist.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read does-not-exist.yaml"));
    let bin = dir.path().join("image.yaml");
    std::fs::write(&bin, b"\x7fELF\x02\x01\x01\x00\x00\x00binary").unwrap();
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(&bin)])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a YAML or JSON text file"));
}

#[test]
fn stdin_is_read_with_dash() {
    let text = std::fs::read_to_string(examples().join("bad/eviction.yaml")).unwrap();
    let (mut cmd, _home) = audit();
    cmd.args(["-f", "-", "-o", "json"])
        .write_stdin(text)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("\"name\": \"cache\""));
}

#[test]
fn a_30_megabyte_input_just_under_the_limit_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.yaml");
    let filler = "x".repeat(100 * 1024);
    let mut text = String::with_capacity(31 * 1024 * 1024);
    let mut i = 0;
    while text.len() < 30 * 1024 * 1024 {
        text.push_str(&format!(
            "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: vm-{i}\n  annotations: {{note: {filler}}}\nspec: {{runStrategy: Always}}\n"
        ));
        i += 1;
    }
    std::fs::write(&file, &text).unwrap();
    let (doc, code) = run_json(&["-f", path(&file)]);
    assert_eq!(code, 1, "the VMs have no memory: errors");
    assert_eq!(doc["summary"]["objects"], i);
}

#[test]
fn namespace_and_selector_filter_file_mode() {
    let (doc, _) = run_json(&["-f", path(&examples()), "-n", "elsewhere"]);
    assert_eq!(
        doc["summary"]["objects"], 0,
        "a namespace with no VMs is not an error"
    );
    let (doc, _) = run_json(&["-f", path(&examples()), "-l", "app=web"]);
    assert_eq!(doc["summary"]["objects"], 1);
    let (mut cmd, _home) = audit();
    cmd.args(["-f", path(&examples()), "-l", "env in (a)"])
        .assert()
        .code(2);
}

#[test]
fn kubeconfig_pointing_nowhere_is_a_cluster_error() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\nclusters:\n- name: dead\n  cluster: {server: 'https://127.0.0.1:1'}\n\
contexts:\n- name: dead\n  context: {cluster: dead, user: u}\nusers:\n- name: u\n  user: {token: t}\n",
    )
    .unwrap();
    let (mut cmd, _home) = audit();
    cmd.args(["--kubeconfig", path(&kubeconfig)])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("cannot reach the API server").and(predicate::str::contains("hint:")),
        );
    let (mut cmd, _home) = audit();
    cmd.args(["--kubeconfig", path(&kubeconfig), "--context", "prod"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("context \"prod\" does not exist").and(predicate::str::contains("dead")),
        );
    let (mut cmd, _home) = audit();
    cmd.args(["--kubeconfig", path(&dir.path().join("absent"))])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("kubeconfig"));
}

#[test]
fn unknown_flags_are_usage_errors() {
    let (mut cmd, _home) = audit();
    cmd.arg("--frobnicate")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unexpected argument"));
    let (mut cmd, _home) = audit();
    cmd.args(["-o", "xml"]).assert().code(2);
}
