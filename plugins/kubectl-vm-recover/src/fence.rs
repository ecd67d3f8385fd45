//! Recovery of a node that is down: refuse unless the operator confirmed it is powered off,
//! then fence, force-delete, release and follow (`vm_kube::recover`), and report each VM.

use std::io::Write;
use std::time::Instant;

use kube::Client;
use serde::Serialize;
use vm_cli::exit::ExitStatus;
use vm_cli::report::UserError;
use vm_cli::session;
use vm_core::recover::{RecoveryAction, RecoveryPlan};
use vm_kube::recover::{NodeCameBack, RecoverOptions, RecoveryReport, VmResult, fence_and_restart};

use crate::cli::Cli;
use crate::render::{PROGRAM, is_structured, print, refuse, refuse_with_plan, structured, word};

pub(crate) async fn run(
    client: &Client,
    plan: &RecoveryPlan,
    lease_renewing: bool,
    cli: &Cli,
) -> Result<ExitStatus, UserError> {
    let node = &plan.node;
    if lease_renewing && !cli.force {
        return refuse_with_plan(
            plan,
            cli,
            &UserError::new(format!(
                "refused: the Lease of node {node} has not expired, so its kubelet may be alive and still run these VMs; \
                 starting them elsewhere could run two copies of each. Nothing was changed"
            ))
            .hint("wait until the Lease expires (see the assessment), or, if you know the node is powered off, pass --force --confirm-fenced"),
        );
    }
    if !cli.confirm_fenced {
        let question = format!(
            "Node {node} is {}. Its VMs will be started on other nodes, which is safe only if {node} is powered off. Is it off",
            word(&plan.node_state)
        );
        let refusal = UserError::new(format!(
            "refused: node {node} is down, but nobody confirmed it is powered off; nothing was changed"
        ))
        .hint(format!(
            "check that {node} is off (BMC, hypervisor, or by hand), then pass --confirm-fenced"
        ));
        if let Err(e) = session::confirm_by_node_name(&question, node, refusal) {
            return refuse_with_plan(plan, cli, &e);
        }
    }
    let confirmed = Instant::now();
    let opts = RecoverOptions {
        lock_namespace: cli.lock_namespace.clone(),
        holder: session::holder(),
    };
    let stop = session::stop_after(cli.timeout);
    let log = |line: String| eprintln!("{line}");
    let report = fence_and_restart(client, plan, &opts, confirmed, stop, &log)
        .await
        .map_err(session::node_op_error)?;
    let result = RecoveryResult::new(plan, &report);
    print(|out| {
        if structured(&result, cli.output, out)? {
            return Ok(());
        }
        result.table(out)
    })?;
    if let Some(back) = &report.came_back {
        return Ok(node_came_back(node, back, &report));
    }
    if report.all_running() {
        Ok(ExitStatus::Success)
    } else {
        if !is_structured(cli.output) {
            eprintln!(
                "{PROGRAM}: not every VM runs elsewhere yet; the node stays fenced. Run the same command to follow them again."
            );
        }
        Ok(ExitStatus::Partial)
    }
}

/// The node renewed its Lease during the run: say what was and was not done, and what next.
fn node_came_back(node: &str, back: &NodeCameBack, report: &RecoveryReport) -> ExitStatus {
    let undone = if back.taint_removed {
        "; the out-of-service taint this run added was taken off again".to_string()
    } else {
        String::new()
    };
    let err = UserError::new(format!(
        "node {node} renewed its kubelet Lease at {}, after the assessment: it is running and may still run VMs,          so the recovery stopped before {}{undone}",
        back.renewed_at, back.stopped_before
    ))
    .hint(format!(
        "run `{PROGRAM} --from-node {node}` again: a Ready node's VMs are live-migrated"
    ));
    if report.changed_nothing() {
        refuse(&err.hint("nothing was changed"))
    } else {
        err.print(PROGRAM);
        ExitStatus::Partial
    }
}

/// The `vm-recover/v1` RecoveryResult: what a fencing run did and where each VM is.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecoveryResult<'a> {
    api_version: &'static str,
    kind: &'static str,
    node: &'a str,
    tainted: bool,
    deleted_pods: &'a [String],
    released_attachments: &'a [String],
    started: &'a [String],
    vms: Vec<VmLine>,
    /// From confirmation until all were running (or the run ended).
    seconds: f64,
    all_running: bool,
    /// The Lease's renewTime when the node came back during the run (and the run stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    node_came_back_at: Option<&'a str>,
    /// The assessment the run acted on: `-o json|yaml` prints this one document.
    plan: &'a RecoveryPlan,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VmLine {
    vm: String,
    action: RecoveryAction,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
    detail: String,
}

impl<'a> RecoveryResult<'a> {
    fn new(plan: &'a RecoveryPlan, report: &'a RecoveryReport) -> Self {
        let vms = report
            .vms
            .iter()
            .map(|v| {
                let reasons = plan
                    .vms
                    .iter()
                    .find(|p| format!("{}/{}", p.namespace, p.name) == v.id)
                    .map(|p| p.reasons.join("; "))
                    .unwrap_or_default();
                match &v.result {
                    VmResult::Running { node, after } => VmLine {
                        vm: v.id.clone(),
                        action: v.action,
                        outcome: "running",
                        node: Some(node.clone()),
                        seconds: Some(round(after.as_secs_f64())),
                        detail: format!(
                            "running on {node}, {:.1} s after confirmation",
                            after.as_secs_f64()
                        ),
                    },
                    VmResult::LeftStopped => VmLine {
                        vm: v.id.clone(),
                        action: v.action,
                        outcome: "left-stopped",
                        node: None,
                        seconds: None,
                        detail: reasons,
                    },
                    VmResult::NotRunning { state } => VmLine {
                        vm: v.id.clone(),
                        action: v.action,
                        outcome: "not-running",
                        node: None,
                        seconds: None,
                        detail: format!("not running yet: {state}"),
                    },
                }
            })
            .collect();
        RecoveryResult {
            api_version: "vm-recover/v1",
            kind: "RecoveryResult",
            node: &plan.node,
            tainted: report.tainted,
            deleted_pods: &report.deleted_pods,
            released_attachments: &report.released_attachments,
            started: &report.started,
            vms,
            seconds: round(report.elapsed.as_secs_f64()),
            all_running: report.all_running(),
            node_came_back_at: report.came_back.as_ref().map(|c| c.renewed_at.as_str()),
            plan,
        }
    }

    fn table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = comfy_table::Table::new();
        t.load_style(comfy_table::presets::NOTHING)
            .force_no_tty()
            .set_header(["VM", "ACTION", "OUTCOME"]);
        for vm in &self.vms {
            t.add_row([vm.vm.clone(), word(&vm.action), vm.detail.clone()]);
        }
        writeln!(out)?;
        writeln!(out, "{}", t.trim_fmt())?;
        let running = self.vms.iter().filter(|v| v.outcome == "running").count();
        let stopped = self.vms.iter().filter(|v| v.outcome == "left-stopped").count();
        let missing = self.vms.iter().filter(|v| v.outcome == "not-running").count();
        writeln!(out)?;
        if self.all_running {
            writeln!(
                out,
                "recovered from node {}: {running} VM(s) running elsewhere, {stopped} left stopped; {:.1} s from confirmation to all running",
                self.node, self.seconds
            )
        } else {
            writeln!(
                out,
                "node {} part-way: {running} VM(s) running elsewhere, {missing} not yet, {stopped} left stopped, after {:.1} s",
                self.node, self.seconds
            )
        }
    }
}

fn round(seconds: f64) -> f64 {
    (seconds * 10.0).round() / 10.0
}
