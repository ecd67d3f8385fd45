//! Runs a rolling maintenance round, node by node, from its recorded state ([`state`]).
//!
//! For each node, in the plan's order:
//! 1. **Drain.** Its drain is planned again on the cluster as it is now. With the round's
//!    nodes still to come cordoned in the planning copy, the plan keeps VMs off them; when it
//!    is feasible, the step is *steered*: the nodes it may use carry [`steer::TARGET_LABEL`]
//!    and its migrations ask for that label in `spec.addedNodeSelector`, so the real
//!    scheduler places each target pod where the plan allows. When only the whole cluster has
//!    room, the step runs unsteered (its VMs may land on nodes still to come and move again,
//!    which the state records); when not even that is feasible, the round stops before this
//!    node's drain and says why. Then the one-node executor drains it, under its node lock.
//! 2. **Maintenance.** `--exec` runs with `NODE` set and its exit status decides; `--pause`
//!    stops the run here, the node cordoned, until `--continue`.
//! 3. **Back.** The node must be Ready and KubeVirt-schedulable within `--node-timeout`; then
//!    it is uncordoned and the VMs its drain stopped are restarted (the `--uncordon` code).
//! 4. **Health gate.** Every VM that left it or was restarted must run, and be Ready where it
//!    has a readiness probe; then `--gate` runs, if given.
//!
//! One round per cluster: the run holds [`Lock::round`](crate::drain::lease::Lock::round)
//! while it works. Every phase is recorded before it begins and after it ends, so a run
//! stopped in any way resumes where it was, never migrating a VM twice (the drain adopts
//! migrations in flight) and never redoing a node whose maintenance finished.

pub mod abort;
pub mod command;
pub mod health;
mod plan;
pub mod state;
pub mod steer;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::sync::watch;
use vm_core::drain::DrainPolicy;
use vm_core::kubevirt::VirtualMachineInstanceMigration;

use crate::drain::lease::{self, Lock};
use crate::drain::{DrainError, ExecOptions, NODE_LABEL, Outcome, Reporter, Stopped, retry};
use crate::error::{ApiError, Scope};
use crate::live::{LiveScope, snapshot};
use plan::choose_plan;
pub use state::RUN_LABEL;
use state::{Phase, RoundState, RoundStatus, Stored};

/// How the run works (the round's own flags are in its state).
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Namespace of the locks and of the state.
    pub lock_namespace: String,
    /// Who runs (user, host and process).
    pub holder: String,
    /// Tries per VM before a drain stops.
    pub max_attempts: u32,
    /// How long a migration target pod may stay unschedulable.
    pub pending_timeout: Duration,
}

/// What the round tells the user, besides each drain's own events.
pub trait RoundReporter: Send + Sync {
    /// A line about the round: a phase that begins, with the time left.
    fn line(&self, text: &str);
    /// The reporter of one node's drain, which moves `moving` VMs.
    fn drain(&self, moving: u64) -> Box<dyn Reporter>;
}

/// How a run ended.
#[derive(Debug)]
pub enum RoundEnd {
    /// Every node is done.
    Done(RoundState),
    /// Stopped after a drain, as `--pause` asks.
    Paused(RoundState),
    /// Stopped part-way (why in the state's message); the same command resumes.
    Stopped(RoundState),
}

/// Resolves when `stop` says the run must stop.
async fn stopped(mut stop: watch::Receiver<Option<Stopped>>) -> Stopped {
    match stop.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or(Stopped::Interrupted),
        // The sender is gone: nobody can ask to stop any more.
        Err(_) => std::future::pending().await,
    }
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// Runs the round recorded in `stored` until it is done, paused or stopped.
///
/// # Errors
/// The round lock is held by a live run; API errors (the state records where it was).
pub async fn run(
    client: &Client,
    stored: Stored,
    cfg: &RunConfig,
    reporter: &dyn RoundReporter,
    stop: watch::Receiver<Option<Stopped>>,
) -> Result<RoundEnd, DrainError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &cfg.lock_namespace);
    let lock = Lock::round();
    lease::acquire_lock(&leases, &cfg.lock_namespace, &lock, &cfg.holder).await?;
    let mut renewal = lease::keep_lock_renewed(leases.clone(), lock.clone(), cfg.holder.clone());
    let mut round = Round {
        client,
        cfg,
        reporter,
        configmaps: Api::namespaced(client.clone(), &cfg.lock_namespace),
        stored,
        stop,
    };
    let ended = tokio::select! {
        r = round.steps() => r,
        lost = &mut renewal => Err(DrainError::Other(format!(
            "this run lost the round's lock ({}); it stopped so that two runs never work on one round",
            lost.ok().and_then(|l| l.holder).map_or_else(|| "the lease was deleted".to_string(), |h| format!("now held by {h}"))
        ))),
    };
    renewal.abort();
    let _ = renewal.await;
    let ended = match ended {
        Ok(end) => end,
        Err(e) => {
            // Say where it stopped, for --status and the resume; the error is the news.
            let mut st = round.stored.state.clone();
            st.status = RoundStatus::Stopped;
            st.message = Some(e.to_string());
            let _ = round.save(st).await;
            lease::release_lock_if_held(&leases, &cfg.lock_namespace, &lock, &cfg.holder).await?;
            return Err(e);
        }
    };
    lease::release_lock_if_held(&leases, &cfg.lock_namespace, &lock, &cfg.holder).await?;
    Ok(ended)
}

/// The work of one run, over its state.
struct Round<'a> {
    client: &'a Client,
    cfg: &'a RunConfig,
    reporter: &'a dyn RoundReporter,
    configmaps: Api<ConfigMap>,
    stored: Stored,
    stop: watch::Receiver<Option<Stopped>>,
}

/// What one phase of a step ended with.
enum Next {
    /// Go on with the next phase (or node).
    Go,
    /// The run ends here, paused as `--pause` asks.
    Paused,
    /// The run ends here, stopped part-way (the state says why).
    Stopped,
}

impl Round<'_> {
    async fn save(&mut self, state: RoundState) -> Result<(), DrainError> {
        self.stored = state::save(
            &self.configmaps,
            &self.cfg.lock_namespace,
            Some(&self.stored),
            &state,
        )
        .await?;
        Ok(())
    }

    fn state(&self) -> RoundState {
        self.stored.state.clone()
    }

    /// Records the round as stopped with `why`, and ends the run.
    async fn stop_with(&mut self, why: String) -> Result<Next, DrainError> {
        let mut st = self.state();
        st.status = RoundStatus::Stopped;
        st.message = Some(why);
        self.save(st).await?;
        Ok(Next::Stopped)
    }

    /// Tells the user that step `i` enters `phase`, with the time left.
    fn announce(&self, i: usize, what: &str) {
        let st = &self.stored.state;
        let left = st.time_left(now());
        let refit = if left.refitted_on > 0 {
            format!(", scaled on the {} node(s) done", left.refitted_on)
        } else {
            String::new()
        };
        self.reporter.line(&format!(
            "step {}/{} {}: {what} (about {} left in this step, {} in the round{refit})",
            i + 1,
            st.steps.len(),
            st.steps[i].node,
            words(left.step),
            words(left.round),
        ));
    }

    async fn steps(&mut self) -> Result<RoundEnd, DrainError> {
        let mut st = self.state();
        if st.status != RoundStatus::Running {
            st.status = RoundStatus::Running;
            st.message = None;
            self.save(st).await?;
        }
        while let Some(i) = self.stored.state.current() {
            let next = match self.stored.state.steps[i].phase {
                Phase::Pending | Phase::Draining => self.drain(i).await?,
                Phase::Drained | Phase::Maintaining => self.maintain(i).await?,
                Phase::Maintained => self.bring_back(i).await?,
                Phase::Uncordoned => self.gate(i).await?,
                Phase::Done => Next::Go,
            };
            match next {
                Next::Go => {}
                Next::Paused => return Ok(RoundEnd::Paused(self.state())),
                Next::Stopped => return Ok(RoundEnd::Stopped(self.state())),
            }
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        steer::clear(&nodes).await?;
        let mut st = self.state();
        st.status = RoundStatus::Done;
        st.message = None;
        self.save(st).await?;
        Ok(RoundEnd::Done(self.state()))
    }

    /// Step 1: plan the node's drain again, steer it, run it.
    async fn drain(&mut self, i: usize) -> Result<Next, DrainError> {
        let node = self.stored.state.steps[i].node.clone();
        let snap = snapshot(
            self.client,
            &LiveScope {
                namespace: None,
                selector: None,
            },
        )
        .await?;
        let to_come: BTreeSet<String> = self.stored.state.steps[i + 1..]
            .iter()
            .filter(|s| s.phase == Phase::Pending)
            .map(|s| s.node.clone())
            .collect();
        let opts = self.stored.state.options.clone();
        let policy = DrainPolicy {
            shutdown_non_migratable: opts.shutdown_non_migratable,
            force: opts.force,
            delete_emptydir_data: opts.delete_emptydir_data,
            migration_bytes_per_second: DrainPolicy::DEFAULT_MIGRATION_BYTES_PER_SECOND,
        };
        // A drain that began steered stays steered when it resumes: its migrations in flight
        // already reserve room on the targets, which a plan made now counts a second time.
        let was_steered = {
            let step = &self.stored.state.steps[i];
            step.phase == Phase::Draining && step.steered
        };
        // The floor is checked before a drain starts. A drain resumed mid-way was checked when
        // it started, and its migrations in flight hold room on their targets that a plan of
        // the rest would count again.
        let fresh = self.stored.state.steps[i].phase == Phase::Pending;
        let floor = opts.min_free_memory_bytes.filter(|_| fresh).map(|b| b as f64);
        let chosen =
            choose_plan(&snap, &node, &to_come, &policy, was_steered)?.and_then(|(plan, steered)| {
                let free = vm_core::rolling::room_during(&snap, &node, &plan).memory;
                match vm_core::rolling::below_floor(free, floor) {
                    Some(why) => Err(vec![why]),
                    None => Ok((plan, steered)),
                }
            });
        let (plan, steered) = match chosen {
            Ok(chosen) => chosen,
            Err(blockers) => {
                let why = format!(
                    "step {} (node {node}) is no longer feasible on the cluster as it is now, so its drain was not started: {}. Nothing of this step changed; once there is room, the same command resumes",
                    i + 1,
                    blockers.join("; ")
                );
                self.reporter.line(&why);
                return self.stop_with(why).await;
            }
        };
        let mut st = self.state();
        let step = &mut st.steps[i];
        step.phase = Phase::Draining;
        step.started_at.get_or_insert_with(now);
        step.estimated_seconds = plan.estimated_seconds + st.options.maintenance_seconds;
        step.steered = steered;
        step.note = (!steered && !to_come.is_empty()).then(|| {
            "the nodes outside the round and those maintained had no room: the scheduler chose among all nodes, and VMs that landed on nodes still to come move again".to_string()
        });
        self.save(st).await?;
        let nodes: Api<Node> = Api::all(self.client.clone());
        let run = self.stored.state.run.clone();
        if steered {
            let targets: BTreeSet<String> = snap
                .nodes
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .filter(|n| *n != node && !to_come.contains(n))
                .collect();
            steer::label_targets(&nodes, &run, &targets).await?;
        }
        self.announce(
            i,
            &format!(
                "draining{}",
                if steered {
                    ", steered to the plan's targets"
                } else {
                    ""
                }
            ),
        );
        let exec = ExecOptions {
            lock_namespace: self.cfg.lock_namespace.clone(),
            holder: self.cfg.holder.clone(),
            max_attempts: self.cfg.max_attempts,
            eviction_retry: Duration::from_secs(5),
            vms_only: false,
            pending_timeout: self.cfg.pending_timeout,
            added_node_selector: steered.then(|| steer::selector(&run)),
            migration_labels: [(RUN_LABEL.to_string(), run.clone())].into(),
            migration_timeout: opts.migration_timeout_seconds.map(Duration::from_secs),
            on_stuck_shutdown: opts.on_stuck_shutdown,
        };
        let moving = plan
            .vms
            .iter()
            .filter(|v| v.action != vm_core::drain::VmAction::Blocked)
            .count() as u64;
        let drain_reporter = self.reporter.drain(moving);
        let outcome = crate::drain::execute(
            self.client,
            &plan,
            &exec,
            drain_reporter.as_ref(),
            stopped(self.stop.clone()),
        )
        .await;
        drop(drain_reporter);
        let migrated = migrated_by_run(self.client, &run, &node).await?;
        let mut st = self.state();
        st.steps[i].migrated = migrated;
        match outcome? {
            Outcome::Done(summary) => {
                let step = &mut st.steps[i];
                for vm in summary.stopped {
                    if !step.stopped.contains(&vm) {
                        step.stopped.push(vm);
                    }
                }
                if !summary.unsteered.is_empty() {
                    step.steered = false;
                    step.note = Some(format!(
                        "this cluster's KubeVirt does not keep spec.addedNodeSelector: the scheduler chose the targets of {}",
                        summary.unsteered.join(", ")
                    ));
                }
                step.phase = Phase::Drained;
                self.save(st).await?;
                Ok(Next::Go)
            }
            Outcome::Stopped(why, summary) => {
                let mut words = format!("the drain of node {node} stopped: {why}");
                if !summary.left_on_node.is_empty() {
                    words.push_str(&format!("; still on it: {}", summary.left_on_node.join(", ")));
                }
                self.save(st).await?;
                self.stop_with(words).await
            }
        }
    }

    /// Step 2: the maintenance (`--exec`), or the pause.
    async fn maintain(&mut self, i: usize) -> Result<Next, DrainError> {
        let node = self.stored.state.steps[i].node.clone();
        let mut st = self.state();
        st.steps[i].phase = Phase::Maintaining;
        let Some(cmd) = st.options.exec.clone() else {
            st.status = RoundStatus::Paused;
            st.message = Some(format!(
                "paused after draining node {node}, which stays cordoned: do its maintenance, then run `kubectl vm-drain-safe --rolling --continue`"
            ));
            self.save(st).await?;
            return Ok(Next::Paused);
        };
        self.save(st).await?;
        self.announce(i, &format!("maintenance: {cmd}"));
        let ended = tokio::select! {
            r = command::run(&cmd, &node) => r.map_err(DrainError::Other)?,
            why = stopped(self.stop.clone()) => {
                return self.stop_with(format!(
                    "{why} during the maintenance of node {node} (its command was stopped); the same command runs it again"
                )).await;
            }
        };
        if let Some(status) = ended.failure_words() {
            return self.stop_with(format!(
                "the maintenance of node {node} failed: `{cmd}` {status}. The node stays cordoned; fix it, then the same command runs the maintenance again, or `--abort`"
            ))
            .await;
        }
        let mut st = self.state();
        st.steps[i].phase = Phase::Maintained;
        self.save(st).await?;
        Ok(Next::Go)
    }

    /// Step 3: wait until the node is back, uncordon it, restart what its drain stopped.
    async fn bring_back(&mut self, i: usize) -> Result<Next, DrainError> {
        let node = self.stored.state.steps[i].node.clone();
        let timeout = Duration::from_secs(self.stored.state.options.node_timeout_seconds);
        self.announce(i, "waiting for the node to be Ready and schedulable");
        tokio::select! {
            r = health::wait_node_back(self.client, &node, timeout) => {
                if let Err(e) = r {
                    return self.stop_with(format!("{e}. It stays cordoned; the same command waits again")).await;
                }
            }
            why = stopped(self.stop.clone()) => {
                return self.stop_with(format!("{why} while waiting for node {node} to come back")).await;
            }
        }
        let report =
            crate::drain::uncordon(self.client, &node, &self.cfg.lock_namespace, &self.cfg.holder).await?;
        let mut st = self.state();
        let step = &mut st.steps[i];
        step.phase = Phase::Uncordoned;
        for vm in report.restarted.iter().chain(&report.already_running) {
            if !step.restarted.contains(vm) {
                step.restarted.push(vm.clone());
            }
        }
        let mut notes: Vec<String> = report
            .lost
            .iter()
            .map(|vm| format!("{vm}: a standalone VMI the drain deleted; nothing can recreate it"))
            .collect();
        notes.extend(report.changed_by_others.iter().cloned());
        if !notes.is_empty() {
            step.note = Some(notes.join("; "));
        }
        self.save(st).await?;
        self.reporter.line(&format!("node {node} uncordoned"));
        Ok(Next::Go)
    }

    /// Step 4: the health gate.
    async fn gate(&mut self, i: usize) -> Result<Next, DrainError> {
        let step = self.stored.state.steps[i].clone();
        let node = step.node.clone();
        let timeout = Duration::from_secs(self.stored.state.options.node_timeout_seconds);
        let vms: Vec<String> = step
            .migrated
            .iter()
            .chain(&step.restarted)
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.announce(i, &format!("health gate: {} VM(s) Running and Ready", vms.len()));
        tokio::select! {
            r = health::wait_vms_healthy(self.client, &vms, timeout) => {
                if let Err(e) = r {
                    return self.stop_with(format!("node {node}: {e}; the same command checks again")).await;
                }
            }
            why = stopped(self.stop.clone()) => {
                return self.stop_with(format!("{why} during the health gate of node {node}")).await;
            }
        }
        if let Some(cmd) = self.stored.state.options.gate.clone() {
            let ended = tokio::select! {
                r = command::run(&cmd, &node) => r.map_err(DrainError::Other)?,
                why = stopped(self.stop.clone()) => {
                    return self.stop_with(format!("{why} during the --gate check after node {node}")).await;
                }
            };
            if let Some(status) = ended.failure_words() {
                return self
                    .stop_with(format!(
                        "the --gate check after node {node} failed: `{cmd}` {status}. The next node was not touched; the same command checks again"
                    ))
                    .await;
            }
        }
        let mut st = self.state();
        st.steps[i].phase = Phase::Done;
        st.steps[i].finished_at = Some(now());
        self.save(st).await?;
        self.reporter.line(&format!(
            "step {}/{} {node}: done",
            i + 1,
            self.stored.state.steps.len()
        ));
        Ok(Next::Go)
    }
}

/// The VMs (`ns/vmiName`) whose migrations of this run off `node` succeeded, by the cluster's
/// record: one entry per migration, so that a VM moved twice shows twice.
async fn migrated_by_run(client: &Client, run: &str, node: &str) -> Result<Vec<String>, DrainError> {
    let api: Api<VirtualMachineInstanceMigration> = Api::all(client.clone());
    let params = ListParams::default().labels(&format!("{RUN_LABEL}={run},{NODE_LABEL}={node}"));
    let list = retry::transient("listing the round's migrations", || api.list(&params))
        .await
        .map_err(|e| {
            DrainError::Api(ApiError::from_kube(
                e,
                "list",
                "virtualmachineinstancemigrations.kubevirt.io",
                Scope::Cluster,
            ))
        })?;
    let mut done: Vec<String> = list
        .items
        .iter()
        .filter(|m| m.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        .map(|m| {
            format!(
                "{}/{}",
                m.metadata.namespace.as_deref().unwrap_or_default(),
                m.spec.vmi_name
            )
        })
        .collect();
    done.sort();
    Ok(done)
}

/// `1h2m`, `5m18s`, `40s`.
#[must_use]
pub fn words(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}
