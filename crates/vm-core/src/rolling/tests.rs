//! Rolling rounds on real-shaped objects: the order, single and double moves, infeasible rounds,
//! VMs that stop, host-model selectors carried from step to step, and the serialized plan.

use super::*;
use crate::manifest::load_into;

fn node(name: &str, extra_labels: &str, memory: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{kubernetes.io/hostname: {name}, kubevirt.io/schedulable: 'true'{extra_labels}}}}}\n\
status: {{allocatable: {{cpu: '16', memory: {memory}, pods: '110'}}, conditions: [{{type: Ready, status: 'True'}}]}}\n"
    )
}

fn vmi(name: &str, on: &str, memory: &str, spec_extra: &str) -> String {
    format!(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: {name}, namespace: prod, uid: uid-{name}}}\n\
spec: {{evictionStrategy: LiveMigrate, domain: {{resources: {{requests: {{memory: {memory}}}}}}}{spec_extra}}}\n\
status: {{phase: Running, nodeName: {on}, conditions: [{{type: LiveMigratable, status: 'True'}}]}}\n"
    )
}

fn snapshot(docs: &[String]) -> ClusterSnapshot {
    let mut s = ClusterSnapshot::default();
    load_into(&mut s, "test", &docs.concat()).unwrap();
    s
}

fn names(round: &[&str]) -> Vec<String> {
    round.iter().map(ToString::to_string).collect()
}

fn plan(docs: &[String], round: &[&str], policy: &RollingPolicy) -> RollingPlan {
    plan_rolling(&snapshot(docs), &names(round), policy).unwrap()
}

/// Every (step index, target) at which VM `name` migrates.
fn moves_of(p: &RollingPlan, name: &str) -> Vec<(usize, String)> {
    p.steps
        .iter()
        .flat_map(|s| {
            s.vms
                .iter()
                .filter(|v| v.name == name && v.action == VmAction::Migrate)
                .map(|v| (s.index, v.target.clone().unwrap_or_default()))
        })
        .collect()
}

/// Four 64Gi round nodes with two 8Gi VMs each, and one node outside the round with room for
/// one node's VMs (two, not three).
fn four_nodes_and_a_spare() -> Vec<String> {
    let mut docs = Vec::new();
    for (n, vms) in [
        ("r1", ["a1", "a2"]),
        ("r2", ["b1", "b2"]),
        ("r3", ["c1", "c2"]),
        ("r4", ["d1", "d2"]),
    ] {
        docs.push(node(n, "", "64Gi"));
        for v in vms {
            docs.push(vmi(v, n, "8Gi", ""));
        }
    }
    docs.push(node("spare", "", "20Gi"));
    docs
}

#[test]
fn with_a_spare_node_every_vm_moves_once_and_a_naive_loop_moves_more() {
    let p = plan(
        &four_nodes_and_a_spare(),
        &["r1", "r2", "r3", "r4"],
        &RollingPolicy::default(),
    );
    assert!(p.feasible, "{:#?}", p.failing_step);
    assert_eq!(p.nodes, names(&["r1", "r2", "r3", "r4"]));
    assert_eq!(p.migrations, 8);
    assert_eq!(p.moves_again, 0);
    for vm in ["a1", "a2", "b1", "b2", "c1", "c2", "d1", "d2"] {
        let moves = moves_of(&p, vm);
        assert_eq!(moves.len(), 1, "{vm}: {moves:?}");
        // Each target is the spare node or a node maintained in an earlier step.
        let (step, target) = &moves[0];
        assert!(
            target == "spare" || p.nodes[..*step].contains(target),
            "{vm} goes to {target} at step {step}"
        );
    }
    assert!(p.steps.iter().all(|s| !s.widened_targets));
    // A naive loop spreads r1's VMs over r2 and r3 (the most free memory), which then move again.
    assert!(p.naive_feasible);
    assert!(p.naive_migrations > 8, "naive: {}", p.naive_migrations);
    // Two 8Gi VMs, two at a time from one node: 10 s + 8 s each, plus 300 s of maintenance.
    assert!(
        p.steps
            .iter()
            .all(|s| s.migration_seconds == 18 && s.estimated_seconds == 318)
    );
    assert_eq!(p.estimated_seconds, 4 * 318);
}

#[test]
fn without_room_outside_the_first_step_uses_a_round_node_and_its_vms_move_twice() {
    let mut docs = Vec::new();
    for (n, vms) in [("n1", ["a1", "a2"]), ("n2", ["b1", "b2"]), ("n3", ["c1", "c2"])] {
        docs.push(node(n, "", "64Gi"));
        for v in vms {
            docs.push(vmi(v, n, "8Gi", ""));
        }
    }
    docs.push(node("small", "", "4Gi"));
    let p = plan(&docs, &["n1", "n2", "n3"], &RollingPolicy::default());
    assert!(p.feasible, "{:#?}", p.failing_step);
    assert_eq!(p.nodes, names(&["n1", "n2", "n3"]));
    let first = &p.steps[0];
    assert!(first.widened_targets);
    assert_eq!(first.moves_again, 2);
    assert!(first.vms.iter().all(|v| v.moves_again
        && matches!(v.target.as_deref(), Some("n2" | "n3"))
        && v.reasons.iter().any(|r| r.contains("moves again"))));
    assert!(
        p.steps[1..]
            .iter()
            .all(|s| !s.widened_targets && s.moves_again == 0)
    );
    // n1's VMs move twice, the second time to a maintained node; the others once.
    for vm in ["a1", "a2"] {
        let moves = moves_of(&p, vm);
        assert_eq!(moves.len(), 2, "{vm}: {moves:?}");
        assert!(p.nodes[..moves[1].0].contains(&moves[1].1), "{vm}: {moves:?}");
    }
    for vm in ["b1", "b2", "c1", "c2"] {
        assert_eq!(moves_of(&p, vm).len(), 1, "{vm}");
    }
    assert_eq!(p.migrations, 6 + 2);
    assert_eq!(p.moves_again, 2);
    // The naive loop makes the same moves here: n1's VMs land on n2 and n3 either way.
    assert_eq!((p.naive_migrations, p.naive_feasible), (8, true));
}

#[test]
fn a_node_whose_vms_fit_only_on_another_round_node_waits_for_it() {
    // va selects zone x: only a and b have it, and the spare node outside does not. a holds less
    // memory, so it is tried first, but its VM fits only once b is maintained and empty.
    let docs = vec![
        node("a", ", zone: x", "64Gi"),
        node("b", ", zone: x", "48Gi"),
        node("spare", "", "32Gi"),
        vmi("va", "a", "8Gi", ", nodeSelector: {zone: x}"),
        vmi("vb1", "b", "8Gi", ""),
        vmi("vb2", "b", "8Gi", ""),
    ];
    let p = plan(&docs, &["a", "b"], &RollingPolicy::default());
    assert!(p.feasible, "{:#?}", p.failing_step);
    assert_eq!(p.nodes, names(&["b", "a"]));
    assert_eq!(moves_of(&p, "va"), vec![(1, "b".to_string())]);
    assert_eq!(moves_of(&p, "vb1"), vec![(0, "spare".to_string())]);
    assert_eq!((p.migrations, p.moves_again), (3, 0));
    assert!(p.steps.iter().all(|s| !s.widened_targets));
    // In the order given, va goes to b first and moves again with b's VMs.
    assert_eq!(p.naive_migrations, 4);
    // With a (64Gi) in maintenance the cluster has 16Gi less room than with b (48Gi).
    let tightest = p.tightest.as_ref().unwrap();
    assert_eq!((tightest.step, tightest.node.as_str()), (1, "a"));
    let gib = 1024.0 * 1024.0 * 1024.0;
    assert!((p.steps[0].free.memory - p.steps[1].free.memory - 16.0 * gib).abs() < 1.0);
}

/// `--min-free-memory`: the room each step leaves is the same in every order (the same VMs
/// need room on the same other nodes), so a step below the floor fails wherever it is put.
#[test]
fn a_step_that_would_leave_less_free_memory_than_the_floor_fails_and_says_so() {
    // While a (64Gi) is in maintenance, b (48Gi) and the spare hold every VM; while b is, a and
    // the spare do, with 16Gi more room.
    let docs = vec![
        node("a", "", "64Gi"),
        node("b", "", "48Gi"),
        node("spare", "", "32Gi"),
        vmi("va", "a", "8Gi", ""),
        vmi("vb1", "b", "8Gi", ""),
        vmi("vb2", "b", "8Gi", ""),
    ];
    let free_at = |p: &RollingPlan, node: &str| {
        p.steps
            .iter()
            .find(|s| s.node == node)
            .map(|s| s.free.memory)
            .unwrap()
    };
    let open = plan(&docs, &["a", "b"], &RollingPolicy::default());
    let (during_a, during_b) = (free_at(&open, "a"), free_at(&open, "b"));
    assert!(during_b > during_a, "{during_a} {during_b}");
    let floor = |bytes: f64| RollingPolicy {
        min_free_memory: Some(bytes),
        ..RollingPolicy::default()
    };

    // A floor between the two: a's step breaks it, b's does not.
    let between = f64::midpoint(during_a, during_b);
    let p = plan(&docs, &["a", "b"], &floor(between));
    assert!(!p.feasible);
    assert_eq!(p.nodes, names(&["b", "a"]));
    let failing = p.failing_step.as_ref().unwrap();
    assert_eq!((failing.index, failing.node.as_str()), (1, "a"));
    let expected = format!(
        "while it is in maintenance the nodes that can take a pod would have {} of memory free, less than the {} that --min-free-memory keeps",
        format_bytes(during_a),
        format_bytes(between)
    );
    assert_eq!(failing.blockers, vec![expected]);
    assert!(failing.vms.is_empty(), "no VM is blocked: {:?}", failing.vms);
    assert_eq!(p.min_free_memory, Some(format_bytes(between)));

    // A floor exactly at the tightest step's room is kept.
    let p = plan(&docs, &["a", "b"], &floor(during_a));
    assert!(p.feasible, "{:#?}", p.failing_step);
    assert_eq!(p.tightest.as_ref().unwrap().node, "a");

    // Above the room of every step: the first step tried fails, and no step is planned.
    let p = plan(&docs, &["a", "b"], &floor(during_b + 1.0));
    assert!(!p.feasible && p.steps.is_empty(), "{:#?}", p.steps);
}

#[test]
fn a_vm_pinned_to_its_node_makes_that_step_fail_and_nothing_of_it_is_planned() {
    let docs = vec![
        node("n1", ", disk: nvme", "64Gi"),
        node("n2", "", "64Gi"),
        node("n3", "", "64Gi"),
        vmi("db", "n1", "8Gi", ", nodeSelector: {disk: nvme}"),
        vmi("web", "n1", "8Gi", ""),
        vmi("x", "n2", "8Gi", ""),
    ];
    let p = plan(&docs, &["n1", "n2", "n3"], &RollingPolicy::default());
    assert!(!p.feasible);
    let failing = p.failing_step.as_ref().unwrap();
    assert_eq!(failing.node, "n1");
    assert_eq!(failing.index, p.steps.len());
    assert_eq!(p.nodes.last().map(String::as_str), Some("n1"));
    assert!(
        failing
            .blockers
            .iter()
            .any(|b| b.contains("VM prod/db") && b.contains("nodeSelector disk=nvme")),
        "{:?}",
        failing.blockers
    );
    assert_eq!(failing.vms.len(), 1, "only db is blocked: {:?}", failing.vms);
    assert_eq!(failing.vms[0].name, "db");
    assert!(failing.not_reached.is_empty());
    // The other nodes are planned; nothing of n1 is: web and db stay, and count nowhere.
    assert_eq!(
        p.steps.iter().map(|s| s.node.as_str()).collect::<Vec<_>>(),
        ["n3", "n2"]
    );
    assert!(moves_of(&p, "web").is_empty() && moves_of(&p, "db").is_empty());
    assert_eq!(p.migrations, 1);
    assert_eq!(
        p.estimated_seconds,
        p.steps.iter().map(|s| s.estimated_seconds).sum::<u64>()
    );
    // A naive loop in the order given blocks at once.
    assert_eq!((p.naive_migrations, p.naive_feasible), (0, false));
}

#[test]
fn a_round_that_no_order_completes_for_lack_of_room_says_where_it_stops() {
    // Three full nodes and nowhere to put a whole node's VMs: 3 × 24Gi on 32Gi nodes.
    let mut docs = Vec::new();
    for n in ["n1", "n2", "n3"] {
        docs.push(node(n, "", "32Gi"));
        for i in 0..3 {
            docs.push(vmi(&format!("{n}-vm{i}"), n, "7Gi", ""));
        }
    }
    let p = plan(&docs, &["n1", "n2", "n3"], &RollingPolicy::default());
    assert!(!p.feasible);
    assert!(p.steps.is_empty(), "{:#?}", p.steps);
    let failing = p.failing_step.as_ref().unwrap();
    assert_eq!((failing.index, failing.node.as_str()), (0, "n1"));
    assert!(
        failing.blockers.iter().any(|b| b.contains("memory free")),
        "{:?}",
        failing.blockers
    );
    assert_eq!(failing.not_reached, names(&["n2", "n3"]));
    assert_eq!((p.migrations, p.estimated_seconds), (0, 0));
    assert!(p.tightest.is_none());
}

fn not_migratable(name: &str, on: &str) -> String {
    vmi(name, on, "4Gi", "").replace(
        "{type: LiveMigratable, status: 'True'}",
        "{type: LiveMigratable, status: 'False', reason: DisksNotLiveMigratable, message: 'PVC data is not shared'}",
    )
}

#[test]
fn a_non_migratable_vm_blocks_or_is_listed_as_stopping() {
    let mut docs = vec![
        node("n1", "", "64Gi"),
        node("n2", "", "64Gi"),
        node("spare", "", "64Gi"),
        not_migratable("db", "n1"),
        vmi("web", "n1", "8Gi", ""),
    ];
    docs.push(
        "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: db, namespace: prod}\nspec: {runStrategy: RerunOnFailure}\n"
            .into(),
    );
    let p = plan(&docs, &["n1", "n2"], &RollingPolicy::default());
    assert!(!p.feasible);
    let failing = p.failing_step.as_ref().unwrap();
    assert_eq!(failing.node, "n1");
    assert!(
        failing
            .blockers
            .iter()
            .any(|b| b.contains("VM prod/db") && b.contains("DisksNotLiveMigratable")),
        "{:?}",
        failing.blockers
    );
    assert!(p.stops.is_empty());

    let policy = RollingPolicy {
        drain: DrainPolicy {
            shutdown_non_migratable: true,
            ..DrainPolicy::default()
        },
        ..RollingPolicy::default()
    };
    let p = plan(&docs, &["n1", "n2"], &policy);
    assert!(p.feasible, "{:#?}", p.failing_step);
    let step = p.steps.iter().find(|s| s.node == "n1").unwrap();
    let db = step.vms.iter().find(|v| v.name == "db").unwrap();
    assert_eq!(db.action, VmAction::Shutdown);
    assert!(
        db.reasons.iter().any(|r| r.contains("--uncordon")),
        "{:?}",
        db.reasons
    );
    assert_eq!(
        p.stops,
        vec![StoppedVm {
            namespace: "prod".into(),
            name: "db".into(),
            node: "n1".into(),
            step: step.index,
        }]
    );
    // Only web migrates; the stopped VM is not moved in any later step either.
    assert_eq!(p.migrations, 1);
    assert!(moves_of(&p, "db").is_empty());
}

/// The labels the node-labeller writes for a CPU: vendor, host model, the models a migration
/// may come from, the host model's required features and the features the node offers, and
/// the named models it can run.
fn cpu(model: &str, migration_from: &[&str], features: &[&str], named: &[&str]) -> String {
    let mut labels = format!(
        ", cpu-vendor.node.kubevirt.io/Intel: 'true', host-model-cpu.node.kubevirt.io/{model}: 'true'"
    );
    for m in migration_from {
        labels.push_str(&format!(", cpu-model-migration.node.kubevirt.io/{m}: 'true'"));
    }
    for f in features {
        labels.push_str(&format!(
            ", host-model-required-features.node.kubevirt.io/{f}: 'true', cpu-feature.node.kubevirt.io/{f}: 'true'"
        ));
    }
    for m in named {
        labels.push_str(&format!(", cpu-model.node.kubevirt.io/{m}: 'true'"));
    }
    labels
}

#[test]
fn a_host_model_vm_keeps_its_first_hosts_selectors_after_moving_to_a_newer_cpu() {
    const SKYLAKE: &str = "Skylake-Client-IBRS";
    let skylake = cpu(SKYLAKE, &[SKYLAKE], &["avx512f"], &[SKYLAKE]);
    let cascadelake = cpu(
        "Cascadelake-Server",
        &[SKYLAKE, "Cascadelake-Server"],
        &["avx512f", "avx512vnni"],
        &[SKYLAKE],
    );
    let amd = ", cpu-vendor.node.kubevirt.io/AMD: 'true', host-model-cpu.node.kubevirt.io/EPYC-Milan: 'true', \
                cpu-model-migration.node.kubevirt.io/EPYC-Milan: 'true'";
    let named = ", domain: {cpu: {model: Skylake-Client-IBRS}, resources: {requests: {memory: 8Gi}}}";
    let docs = vec![
        node("old1", &skylake, "32Gi"),
        node("cas1", &cascadelake, "64Gi"),
        node("old2", &skylake, "32Gi"),
        // Outside the round, the roomiest node, but of another vendor.
        node("amd", amd, "128Gi"),
        // web is host-model on a Skylake node; c and d run the named Skylake model.
        vmi("web", "old1", "4Gi", ""),
        vmi("c", "cas1", "8Gi", "").replace(", domain: {resources: {requests: {memory: 8Gi}}}", named),
        vmi("d", "old2", "8Gi", "").replace(", domain: {resources: {requests: {memory: 8Gi}}}", named),
    ];
    let p = plan(&docs, &["old1", "cas1", "old2"], &RollingPolicy::default());
    assert!(p.feasible, "{:#?}", p.failing_step);
    assert_eq!(p.nodes, names(&["old1", "old2", "cas1"]));
    // Step 0: no node outside the round takes Intel VMs, so web goes to the roomiest round
    // node, the Cascadelake one, and moves again later.
    let web = moves_of(&p, "web");
    assert_eq!(web[0], (0, "cas1".to_string()));
    assert_eq!(p.moves_again, 1);
    // Step 2: from cas1, web still selects Skylake and avx512f (carried by its pod), which the
    // Skylake nodes have; re-derived from cas1 it would need Cascadelake, which only cas1 has.
    assert_eq!(web.len(), 2, "{web:?}");
    assert_eq!(web[1].0, 2);
    assert!(matches!(web[1].1.as_str(), "old1" | "old2"), "{web:?}");
    assert_eq!(p.migrations, 4);
}

#[test]
fn the_plan_serializes_with_its_kind_and_camel_case_fields() {
    let p = plan(
        &four_nodes_and_a_spare(),
        &["r1", "r2", "r3", "r4"],
        &RollingPolicy::default(),
    );
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["apiVersion"], "vm-drain-safe/v1");
    assert_eq!(json["kind"], "RollingPlan");
    assert_eq!(json["nodes"][0], "r1");
    assert_eq!(json["feasible"], true);
    assert_eq!(json["migrations"], 8);
    assert!(json["naiveMigrations"].as_u64().unwrap() > 8);
    assert_eq!(json["naiveFeasible"], true);
    assert_eq!(json["movesAgain"], 0);
    assert_eq!(json["estimatedSeconds"], 4 * 318);
    assert_eq!(json["maintenanceSeconds"], 300);
    assert_eq!(json["limits"]["parallelMigrationsPerCluster"], 5);
    assert!(json.get("failingStep").is_none());
    let step = &json["steps"][0];
    assert_eq!(step["node"], "r1");
    assert_eq!(step["estimatedSeconds"], 318);
    assert_eq!(step["migrationSeconds"], 18);
    assert_eq!(step["widenedTargets"], false);
    assert_eq!(step["vms"][0]["action"], "migrate");
    assert_eq!(step["vms"][0]["target"], "spare");
    assert!(step["freeMemory"].is_string() && step["freeCpu"].is_string());
    assert!(step.get("free").is_none());
    let tightest = &json["tightest"];
    assert!(tightest["step"].is_u64() && tightest["node"].is_string());
    assert!(tightest["freeCpu"].is_string() && tightest["freeMemory"].is_string());

    let docs = vec![
        node("n1", ", disk: nvme", "64Gi"),
        node("n2", "", "64Gi"),
        vmi("db", "n1", "8Gi", ", nodeSelector: {disk: nvme}"),
    ];
    let json = serde_json::to_value(plan(&docs, &["n1"], &RollingPolicy::default())).unwrap();
    assert_eq!(json["feasible"], false);
    assert_eq!(json["failingStep"]["index"], 0);
    assert_eq!(json["failingStep"]["node"], "n1");
    assert!(
        json["failingStep"]["blockers"][0]
            .as_str()
            .unwrap()
            .contains("VM prod/db")
    );
    assert_eq!(json["failingStep"]["vms"][0]["action"], "blocked");
    assert!(json["failingStep"]["notReached"].as_array().unwrap().is_empty());
}

#[test]
fn an_empty_round_a_repeated_node_and_an_unknown_node_are_errors() {
    let s = snapshot(&four_nodes_and_a_spare());
    let policy = RollingPolicy::default();
    assert_eq!(
        plan_rolling(&s, &[], &policy).unwrap_err(),
        RollingError::EmptyRound
    );
    assert_eq!(
        plan_rolling(&s, &names(&["r1", "r2", "r1"]), &policy).unwrap_err(),
        RollingError::DuplicateNode("r1".into())
    );
    assert_eq!(
        plan_rolling(&s, &names(&["r1", "r9"]), &policy).unwrap_err(),
        RollingError::Plan(PlanError::NoSuchNode("r9".into()))
    );
}

#[test]
fn a_node_just_rebooted_takes_vms_once_its_step_brought_it_back() {
    // r1 was rebooted a moment ago: KubeVirt has not labelled it schedulable yet, and it runs
    // nothing. The round waits for the label after r1's step, so r2's VM may go to r1.
    let docs = vec![
        node("r1", "", "64Gi").replace(
            "kubevirt.io/schedulable: 'true'",
            "kubevirt.io/schedulable: 'false'",
        ),
        node("r2", "", "64Gi"),
        vmi("b1", "r2", "8Gi", ""),
    ];
    let p = plan(&docs, &["r1", "r2"], &RollingPolicy::default());
    assert!(p.feasible, "{:?}", p.failing_step);
    assert_eq!(p.nodes, ["r1", "r2"]);
    assert_eq!(moves_of(&p, "b1"), [(1, "r1".to_string())]);
}
