//! `--rolling`: the plan of a maintenance round over many nodes (`vm_core::rolling`), for
//! people (one row per VM that leaves, step by step, then the totals) and for scripts (the
//! `vm-drain-safe/v1` RollingPlan). Running the round is [`crate::round`]'s.

use std::io::Write;

use comfy_table::{Table, presets::NOTHING};
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use vm_cli::exit::ExitStatus;
use vm_cli::report::{UserError, api_error};
use vm_core::drain::{DrainPolicy, VmAction};
use vm_core::labels::LabelQuery;
use vm_core::rolling::{RollingError, RollingPlan, RollingPolicy, plan_rolling};
use vm_kube::live::{LiveScope, snapshot};

use crate::cli::{Cli, Format};
use crate::render::{structured, to_stdout};

const PROGRAM: &str = "kubectl vm-drain-safe";

/// Plans the round the flags name, prints it, and says whether it is feasible (exit 0) or
/// blocked (exit 1); nothing changes.
pub(crate) async fn plan(client: &Client, cli: &Cli) -> Result<ExitStatus, UserError> {
    let plan = compute(client, cli).await?;
    to_stdout(|out| render(&plan, cli.output, out))?;
    if plan.feasible {
        Ok(ExitStatus::Success)
    } else {
        eprintln!("{PROGRAM}: the round is blocked; nothing was changed");
        Ok(ExitStatus::Findings)
    }
}

/// The plan of the round the flags name, on the cluster as it is.
pub(crate) async fn compute(client: &Client, cli: &Cli) -> Result<RollingPlan, UserError> {
    // The plan places VMs anywhere in the cluster: every node, pod and VMI.
    let snap = snapshot(
        client,
        &LiveScope {
            namespace: None,
            selector: None,
        },
    )
    .await
    .map_err(api_error)?;
    let round = round_nodes(&snap.nodes, cli)?;
    let policy = RollingPolicy {
        drain: DrainPolicy {
            shutdown_non_migratable: cli.shutdown_non_migratable,
            force: cli.force,
            delete_emptydir_data: cli.delete_emptydir_data,
            migration_bytes_per_second: DrainPolicy::DEFAULT_MIGRATION_BYTES_PER_SECOND,
        },
        maintenance_seconds: cli.maintenance_time.as_secs(),
        min_free_memory: cli.min_free_memory,
        ..RollingPolicy::default()
    };
    plan_rolling(&snap, &round, &policy).map_err(|e| match e {
        RollingError::Plan(_) => UserError::from(e).hint("list the nodes with `kubectl get nodes`"),
        other => UserError::from(other),
    })
}

/// The nodes the flags name, listing the nodes only for `-l`: to compare with a recorded
/// round without reading the whole cluster.
pub(crate) async fn round_nodes_live(client: &Client, cli: &Cli) -> Result<Vec<String>, UserError> {
    if cli.selector.is_none() {
        return Ok(cli.nodes.clone());
    }
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let list = nodes.list(&kube::api::ListParams::default()).await.map_err(|e| {
        api_error(vm_kube::error::ApiError::from_kube(
            e,
            "list",
            "nodes",
            vm_kube::error::Scope::Cluster,
        ))
    })?;
    round_nodes(&list.items, cli)
}

/// The nodes of the round: as named, or those of `nodes` whose labels match `-l`, by name.
fn round_nodes(nodes: &[Node], cli: &Cli) -> Result<Vec<String>, UserError> {
    let Some(selector) = &cli.selector else {
        return Ok(cli.nodes.clone());
    };
    let query = LabelQuery::parse(selector).map_err(|e| {
        UserError::new(format!("-l {selector}: {e}"))
            .hint("a selector such as pool=workers or 'role in (a,b)'")
    })?;
    let mut names: Vec<String> = nodes
        .iter()
        .filter(|n| query.matches(n.metadata.labels.as_ref().unwrap_or(&Default::default())))
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(UserError::new(format!("no node matches -l {selector}"))
            .hint("list the nodes with their labels: `kubectl get nodes --show-labels`"));
    }
    Ok(names)
}

pub(crate) fn render(plan: &RollingPlan, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    if structured(plan, format, out)? {
        return Ok(());
    }
    table(plan, format == Format::Wide, out)
}

/// `migrate`, `shutdown`, `blocked`: the action as the DrainPlan spells it.
fn action_word(action: VmAction) -> String {
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `1h2m`, `5m18s`, `40s`.
fn duration(seconds: u64) -> String {
    vm_kube::rolling::words(seconds)
}

fn table(plan: &RollingPlan, wide: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let mut t = Table::new();
    t.load_style(NOTHING).force_no_tty();
    let mut header = vec!["STEP", "NODE", "VM", "ACTION", "TARGET"];
    if wide {
        header.push("REASON");
    }
    t.set_header(header);
    for step in &plan.steps {
        let first = format!("{}", step.index + 1);
        if step.vms.is_empty() {
            t.add_row(vec![first, step.node.clone(), "-".into(), "-".into(), "-".into()]);
            continue;
        }
        for (i, vm) in step.vms.iter().enumerate() {
            let (n, node) = if i == 0 {
                (first.clone(), step.node.clone())
            } else {
                (String::new(), String::new())
            };
            let target = match (&vm.target, vm.moves_again) {
                (Some(t), true) => format!("{t} (moves again)"),
                (Some(t), false) => t.clone(),
                (None, _) => "-".into(),
            };
            let mut row = vec![
                n,
                node,
                format!("{}/{}", vm.namespace, vm.name),
                action_word(vm.action),
                target,
            ];
            if wide {
                row.push(vm.reasons.join("; "));
            }
            t.add_row(row);
        }
    }
    writeln!(out, "{}", t.trim_fmt())?;
    writeln!(out)?;
    writeln!(out, "Order: {}.", plan.nodes.join(", "))?;
    let once = if plan.moves_again == 0 {
        "each VM moves once".to_string()
    } else {
        format!(
            "{} of them land on nodes still to come and move again",
            plan.moves_again
        )
    };
    let naive = if plan.naive_feasible {
        format!("{}", plan.naive_migrations)
    } else {
        format!("{} before it blocks", plan.naive_migrations)
    };
    writeln!(
        out,
        "Migrations: {} ({once}); a loop of `{PROGRAM} NODE` over the nodes in the order given: {naive}.",
        plan.migrations
    )?;
    writeln!(
        out,
        "Estimated: {} ({} per cluster, {} outbound per node; {} of maintenance per node{}).",
        duration(plan.estimated_seconds),
        plan.limits.parallel_migrations_per_cluster,
        plan.limits.parallel_outbound_migrations_per_node,
        duration(plan.maintenance_seconds),
        plan.migration_model
            .describe()
            .map(|d| format!("; {d}"))
            .unwrap_or_default()
    )?;
    if let Some(tight) = &plan.tightest {
        writeln!(
            out,
            "Tightest: step {} ({} in maintenance), {} CPU and {} memory free on the nodes that can take VMs.",
            tight.step + 1,
            tight.node,
            tight.free_cpu,
            tight.free_memory
        )?;
    }
    if let Some(floor) = &plan.min_free_memory {
        writeln!(
            out,
            "Kept free: {floor} of memory at every step (--min-free-memory)."
        )?;
    }
    if plan.stops.is_empty() {
        writeln!(out, "Stops: none.")?;
    } else {
        let stopped: Vec<String> = plan
            .stops
            .iter()
            .map(|s| format!("{}/{} (step {}, on {})", s.namespace, s.name, s.step + 1, s.node))
            .collect();
        writeln!(
            out,
            "Stops: {} (until `--uncordon` of their node).",
            stopped.join(", ")
        )?;
    }
    // The round's nodes: those ordered, and those a blocked round never reached.
    let n = plan.nodes.len() + plan.failing_step.as_ref().map_or(0, |f| f.not_reached.len());
    match &plan.failing_step {
        None => writeln!(out, "Rolling plan for {n} node(s): feasible."),
        Some(fail) => {
            writeln!(
                out,
                "Rolling plan for {n} node(s): BLOCKED at step {} (node {}):",
                fail.index + 1,
                fail.node
            )?;
            for b in &fail.blockers {
                writeln!(out, "  - {b}")?;
            }
            if !fail.not_reached.is_empty() {
                writeln!(out, "Not reached: {}.", fail.not_reached.join(", "))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three full nodes: 3 × 21Gi of VMs on 32Gi nodes, nowhere to put a whole node's VMs.
    fn blocked_plan() -> RollingPlan {
        let mut docs = String::new();
        for n in ["n1", "n2", "n3"] {
            docs.push_str(&format!(
                "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {n}, labels: {{kubevirt.io/schedulable: 'true'}}}}\n\
status: {{allocatable: {{cpu: '16', memory: 32Gi, pods: '110'}}, conditions: [{{type: Ready, status: 'True'}}]}}\n"
            ));
            for i in 0..3 {
                docs.push_str(&format!(
                    "---\napiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: {n}-vm{i}, namespace: prod}}\n\
spec: {{evictionStrategy: LiveMigrate, domain: {{resources: {{requests: {{memory: 7Gi}}}}}}}}\n\
status: {{phase: Running, nodeName: {n}, conditions: [{{type: LiveMigratable, status: 'True'}}]}}\n"
                ));
            }
        }
        let mut snapshot = vm_core::snapshot::ClusterSnapshot::default();
        vm_core::manifest::load_into(&mut snapshot, "test", &docs).unwrap();
        let round: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        plan_rolling(&snapshot, &round, &RollingPolicy::default()).unwrap()
    }

    #[test]
    fn a_blocked_round_counts_every_node_of_the_round_and_names_those_not_reached() {
        let plan = blocked_plan();
        let mut out = Vec::new();
        table(&plan, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Rolling plan for 3 node(s): BLOCKED at step 1 (node n1):"),
            "{text}"
        );
        assert!(text.contains("Not reached: n2, n3."), "{text}");
    }

    #[test]
    fn durations_read_as_an_operator_writes_them() {
        assert_eq!(duration(40), "40s");
        assert_eq!(duration(300), "5m");
        assert_eq!(duration(318), "5m18s");
        assert_eq!(duration(3720), "1h2m");
    }
}
