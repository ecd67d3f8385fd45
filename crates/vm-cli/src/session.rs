//! The frame of a node plugin's run: the async runtime, the client from kubectl's flags, the
//! identity that holds a node's lock, and the confirmation of a destructive step.

use std::future::Future;
use std::io::IsTerminal;

use kube::Client;
use vm_kube::access::{self, Permission};
use vm_kube::client::{Connection, Impersonation, connect};
use vm_kube::drain::DrainError;

use crate::args::KubeArgs;
use crate::exit::ExitStatus;
use crate::report::UserError;

/// Runs `body` on a two-thread runtime and turns its error into the printed message and exit
/// status 2, so every plugin's `main` is one call.
pub fn block_on(program: &str, body: impl Future<Output = Result<ExitStatus, UserError>>) -> ExitStatus {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            UserError::new(format!("cannot start the async runtime: {e}")).print(program);
            return ExitStatus::Error;
        }
    };
    match runtime.block_on(body) {
        Ok(status) => status,
        Err(err) => {
            err.print(program);
            ExitStatus::Error
        }
    }
}

/// A client for kubectl's connection flags (`--kubeconfig`, `--context`, `--as`...).
///
/// # Errors
/// The kubeconfig cannot be read or names no usable context, or a flag cannot be used.
pub async fn client(kube: &KubeArgs) -> Result<Client, UserError> {
    Ok(connection(kube, "check --kubeconfig and --context").await?.client)
}

/// The connection kubectl's flags ask for, with the context's namespace; `hint` goes with an
/// error. `--insecure-skip-tls-verify` is said on stderr, every time.
///
/// # Errors
/// The kubeconfig cannot be read or names no usable context, or a flag cannot be used.
pub async fn connection(kube: &KubeArgs, hint: &str) -> Result<Connection, UserError> {
    let options = kube.connect_options();
    let connection = connect(&options).await.map_err(|e| {
        let flag = matches!(e, vm_kube::client::ClientError::Flag { .. });
        let err = UserError::from(e);
        if flag { err } else { err.hint(hint) }
    })?;
    if options.insecure_skip_tls_verify {
        eprintln!(
            "warning: --insecure-skip-tls-verify: the API server's certificate is not checked; anyone on the network path can read and change this session, credentials included"
        );
    }
    Ok(connection)
}

/// Refuses, before anything changes, when the user lacks a permission in `needed`: every missing
/// one is named, one a line, with the `kubectl auth can-i` lines that check the first few and
/// the role that grants them all. With `--as` (or a kubeconfig user entry that impersonates),
/// the API server answers for the impersonated user (and groups), and the refusal names them.
///
/// # Errors
/// The API server denied at least one permission.
pub async fn check_access(
    client: &Client,
    kube: &KubeArgs,
    needed: &[Permission],
    role: &str,
) -> Result<(), UserError> {
    let Err(missing) = access::check(client, needed).await else {
        return Ok(());
    };
    let who = vm_kube::client::acting_as(&kube.connect_options()).await;
    Err(refusal(&missing.0, who.as_ref(), role))
}

/// The refusal of [`check_access`] for the `missing` permissions of `who` (the user of the
/// kubeconfig when `None`).
#[must_use]
pub fn refusal(missing: &[Permission], who: Option<&Impersonation>, role: &str) -> UserError {
    let whose = who.map(|who| format!(" as {who}")).unwrap_or_default();
    let mut err = match missing {
        [one] => UserError::new(format!("missing permission{whose}: {one}; nothing was changed")),
        many => UserError::new(format!(
            "{} missing permissions{whose}; nothing was changed:\n  {}",
            many.len(),
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        )),
    };
    let as_flags = who.map(Impersonation::flags).unwrap_or_default();
    for permission in missing.iter().take(CAN_I_HINTS) {
        err = err.hint(format!("check with `{}{as_flags}`", permission.can_i()));
    }
    err.hint(format!(
        "the ClusterRole {role} in deploy/rbac/{role}.yaml grants what this command needs"
    ))
}

/// How many `kubectl auth can-i` hints a refusal prints: enough to check, few enough to read.
const CAN_I_HINTS: usize = 3;

/// A node operation's error for the user: a failed API call names the permission to check.
#[must_use]
pub fn node_op_error(e: DrainError) -> UserError {
    match e {
        DrainError::Api(api) => crate::report::api_error(api),
        other => UserError::from(other),
    }
}

/// Who holds a node's lock: user, host and process, so that a refused run can say who works
/// on the node.
#[must_use]
pub fn holder() -> String {
    holder_named(None)
}

/// [`holder`] with the Kubernetes identity the run acts as beside the host (the API server's
/// answer where it gives one, else the kubeconfig's user entry): `ops@vm:4242 as alice`, or
/// `vm:4242 as alice` where `USER` is unset.
pub async fn holder_acting_as(client: &Client, kube: &KubeArgs) -> String {
    let entry = vm_kube::client::user_entry(&kube.connect_options()).await;
    let identity = vm_kube::identity::acting_as(client, entry.as_deref()).await;
    holder_named(identity.as_deref())
}

fn holder_named(identity: Option<&str>) -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into());
    let at = format!("{}:{}", host.trim(), std::process::id());
    match (user, identity) {
        (Some(user), Some(identity)) => format!("{user}@{at} as {identity}"),
        (None, Some(identity)) => format!("{at} as {identity}"),
        (user, None) => format!("{}@{at}", user.as_deref().unwrap_or("unknown")),
    }
}

/// Asks the person at the terminal to type `node` to go ahead with `what`. Without a terminal
/// it refuses with `without_terminal` (the flag to pass instead), so that a pipe never
/// confirms by accident.
///
/// # Errors
/// Not confirmed; nothing has changed.
pub fn confirm_by_node_name(what: &str, node: &str, without_terminal: UserError) -> Result<(), UserError> {
    if !std::io::stdin().is_terminal() {
        return Err(without_terminal);
    }
    eprint!("{what}? Type the node name to confirm: ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| UserError::new(format!("reading the answer: {e}")))?;
    if answer.trim() == node {
        Ok(())
    } else {
        Err(UserError::new("not confirmed; nothing was changed"))
    }
}

/// Resolves when the run must stop: `timeout` elapsed, or Ctrl-C. The executors then cancel
/// what has not started and report what is where.
pub async fn stop_after(timeout: std::time::Duration) -> vm_kube::drain::Stopped {
    tokio::select! {
        () = tokio::time::sleep(timeout) => vm_kube::drain::Stopped::Timeout,
        _ = tokio::signal::ctrl_c() => vm_kube::drain::Stopped::Interrupted,
    }
}

/// Executes a drain plan with progress on stderr (a bar per migration on a terminal, lines
/// elsewhere) until it is done, `timeout` elapses or Ctrl-C.
///
/// # Errors
/// The lock is held by another run, or an API call failed.
pub async fn execute_with_progress(
    client: &Client,
    plan: &vm_core::drain::DrainPlan,
    opts: &vm_kube::drain::ExecOptions,
    timeout: std::time::Duration,
) -> Result<vm_kube::drain::Outcome, UserError> {
    let moving = plan
        .vms
        .iter()
        .filter(|v| v.action != vm_core::drain::VmAction::Blocked)
        .count() as u64;
    let reporter = crate::progress::reporter(moving);
    let outcome = vm_kube::drain::execute(client, plan, opts, reporter.as_ref(), stop_after(timeout))
        .await
        .map_err(node_op_error)?;
    drop(reporter);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_impersonated_user_and_checks_as_them() {
        let missing = access::edit_node();
        let mine = refusal(&missing, None, "vm-drain-safe");
        assert_eq!(
            mine.message,
            "2 missing permissions; nothing was changed:\n  get nodes at cluster scope\n  patch nodes at cluster scope"
        );
        assert_eq!(mine.hints[0], "check with `kubectl auth can-i get nodes -A`");
        let jane = Impersonation {
            user: "jane".into(),
            groups: vec!["ops".into()],
        };
        let hers = refusal(&missing[..1], Some(&jane), "vm-drain-safe");
        assert_eq!(
            hers.message,
            "missing permission as user jane in group ops: get nodes at cluster scope; nothing was changed"
        );
        assert_eq!(
            hers.hints[0],
            "check with `kubectl auth can-i get nodes -A --as jane --as-group ops`"
        );
    }
}
