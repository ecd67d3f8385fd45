//! The locks: `coordination.k8s.io/v1` Leases, one per node (`vm-drain-safe-<node>`) and one
//! for the rolling round ([`Lock::round`]).
//!
//! A run holds it while it works and renews it every third of its duration; another run
//! refuses, naming the holder, while the holder renewed it within the lease duration. Once it
//! has expired (a killed run: nothing released it), the next run takes it over, but only after
//! seeing it unchanged for one more renewal period, so that a holder whose clock runs behind,
//! or whose renewal was late, is never displaced while it still renews. A holder that was a
//! process of the same user on the same host, and no longer runs there, is taken over at once:
//! the same command run again after a SIGKILL resumes without waiting. A run that ends,
//! finished or stopped, deletes the lock if it still holds it.
//!
//! The renewal rides out an API server outage (it retries every second until the server
//! answers). If the lock was nevertheless taken over or deleted meanwhile, the renewal task
//! ends with [`LockLost`] and the run stops: two runs never work on one node.
//!
//! The lease duration is [`LEASE_SECONDS`] (60 s). For tests only, the environment variable
//! [`LEASE_SECONDS_ENV`] sets another (3 to 3600 s), so that the expiry of a killed run's lock
//! can be shown in seconds.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};

use super::DrainError;
use super::retry;
use crate::delete::delete_if_present;
use crate::error::{ApiError, Scope};

/// How long a lease stays valid without renewal, in seconds.
pub const LEASE_SECONDS: i32 = 60;

/// For tests only: the lease duration in seconds, instead of [`LEASE_SECONDS`].
pub const LEASE_SECONDS_ENV: &str = "VM_DRAIN_SAFE_LOCK_SECONDS";

/// The lease duration this process writes: [`LEASE_SECONDS`] unless [`LEASE_SECONDS_ENV`]
/// holds a number of seconds from 3 to 3600.
#[must_use]
pub fn lease_seconds() -> i32 {
    std::env::var(LEASE_SECONDS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|s| (3..=3600).contains(s))
        .unwrap_or(LEASE_SECONDS)
}

/// How often a holder renews a lease of `seconds`.
fn renewal_period(seconds: i32) -> Duration {
    Duration::from_secs(u64::try_from(seconds / 3).unwrap_or(1).max(1))
}

/// The lease name for `node`.
#[must_use]
pub fn lease_name(node: &str) -> String {
    format!("vm-drain-safe-{node}")
}

/// A lock: the lease that holds it, and what it guards, as refusals name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    /// The Lease's name.
    pub lease: String,
    /// What it guards, for messages: `node n1`, `the rolling round`.
    pub what: String,
}

impl Lock {
    /// The lock of one node: one drain, uncordon or recovery at a time.
    #[must_use]
    pub fn node(node: &str) -> Self {
        Self {
            lease: lease_name(node),
            what: format!("node {node}"),
        }
    }

    /// The lock of the cluster's rolling round: one round at a time. The dot after the prefix
    /// keeps it apart from every node's lock (`vm-drain-safe-NODE`).
    #[must_use]
    pub fn round() -> Self {
        Self {
            lease: "vm-drain-safe.rolling".into(),
            what: "the rolling round".into(),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn api_err(e: kube::Error, verb: &'static str, ns: &str) -> DrainError {
    DrainError::Api(ApiError::from_kube(
        e,
        verb,
        "leases.coordination.k8s.io",
        Scope::Namespace(ns.to_string()),
    ))
}

/// Seconds since the lease was last renewed, and the duration its holder wrote.
fn age_and_duration(spec: &LeaseSpec) -> (i64, i64) {
    let age = spec
        .renew_time
        .as_ref()
        .map_or(i64::MAX, |t| Timestamp::now().as_second() - t.0.as_second());
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
    (age, duration)
}

fn spec_for(holder: &str, transitions: Option<i32>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.to_string()),
        lease_duration_seconds: Some(lease_seconds()),
        acquire_time: Some(now()),
        renew_time: Some(now()),
        lease_transitions: transitions,
        ..LeaseSpec::default()
    }
}

/// The refusal for a lock held by `holder`, renewed `age_seconds` ago with a lease of
/// `duration_seconds`.
fn locked(lock: &Lock, holder: impl Into<String>, age_seconds: i64, duration_seconds: i64) -> DrainError {
    DrainError::Locked {
        what: lock.what.clone(),
        holder: holder.into(),
        age_seconds,
        expires_in_seconds: (duration_seconds - age_seconds).max(0),
    }
}

/// Whether the lock's `current` holder is a process of this user on this host that no longer
/// runs: a run killed here (SIGKILL, a closed terminal) whose lease has not expired yet. Its
/// lock can be taken over at once, since nothing renews it any more. A holder on another host,
/// of another user, or whose process cannot be looked up is never judged dead: its lease must
/// expire first. A holder is `user@host:pid`, or `host:pid` where `USER` is unset, either
/// followed by ` as IDENTITY` (the Kubernetes user a rolling round acts as), which says nothing
/// of where the process runs.
fn holder_is_dead_here(current: &str, me: &str) -> bool {
    let process = |holder: &str| {
        holder
            .split_once(" as ")
            .map_or(holder, |(process, _)| process)
            .to_string()
    };
    let (current, me) = (process(current), process(me));
    let (Some((current_who, pid)), Some((my_who, my_pid))) = (current.rsplit_once(':'), me.rsplit_once(':'))
    else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    current_who == my_who && my_pid.parse::<u32>().ok() != Some(pid) && process_gone(pid)
}

/// Whether no process `pid` runs on this host. Linux answers from `/proc`; elsewhere `ps -p`
/// does (macOS); when neither can tell, the process is taken to be alive.
fn process_gone(pid: u32) -> bool {
    if std::path::Path::new("/proc/self").exists() {
        return !std::path::Path::new(&format!("/proc/{pid}")).exists();
    }
    std::process::Command::new("ps")
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.code() == Some(1))
}

/// One try at the lock; `Err` only for an API error (transient ones are retried by the caller).
async fn try_acquire(
    api: &Api<Lease>,
    ns: &str,
    lock: &Lock,
    holder: &str,
) -> Result<Result<(), DrainError>, kube::Error> {
    let name = lock.lease.clone();
    let Some(mut lease) = api.get_opt(&name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns.to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(spec_for(holder, None)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Ok(())),
            // Someone created it first, or an earlier create of ours whose answer was lost did.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let spec = api
                    .get_opt(&lock.lease)
                    .await?
                    .and_then(|l| l.spec)
                    .unwrap_or_default();
                let (age, duration) = age_and_duration(&spec);
                match spec.holder_identity {
                    Some(h) if h == holder => Ok(Ok(())),
                    Some(h) => Ok(Err(locked(lock, h, age, duration))),
                    None => Ok(Err(locked(
                        lock,
                        "another run that started at the same moment",
                        0,
                        duration,
                    ))),
                }
            }
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let current = spec.holder_identity.clone().unwrap_or_default();
    let (age, duration) = age_and_duration(&spec);
    if current != holder && holder_is_dead_here(&current, holder) {
        tracing::warn!(
            "{}: the lock is held by {current}, a process of this host that no longer runs; taking it over",
            lock.what
        );
    } else if current != holder {
        if age < duration {
            return Ok(Err(locked(lock, current, age, duration)));
        }
        // Expired by the clocks: make sure the holder really stopped renewing before taking over.
        let settle =
            renewal_period(i32::try_from(duration).unwrap_or(LEASE_SECONDS)) + Duration::from_secs(1);
        tracing::warn!(
            "{}: the lock held by {current} was last renewed {age} s ago (lease of {duration} s); \
             taking it over if it is still not renewed in {} s",
            lock.what,
            settle.as_secs()
        );
        let seen = lease.metadata.resource_version.clone();
        tokio::time::sleep(settle).await;
        match api.get_opt(&lock.lease).await? {
            Some(again) if again.metadata.resource_version == seen => lease = again,
            // Renewed (the holder is alive), released, or taken by someone else: look again.
            Some(again) => {
                let spec = again.spec.unwrap_or_default();
                let (age, duration) = age_and_duration(&spec);
                return Ok(Err(locked(
                    lock,
                    spec.holder_identity.unwrap_or_default(),
                    age,
                    duration,
                )));
            }
            None => return Ok(Err(locked(lock, "another run that released it just now", 0, 0))),
        }
    }
    // Expired or ours: take it over. The resourceVersion makes a racing take-over fail.
    lease.spec = Some(spec_for(holder, Some(spec.lease_transitions.unwrap_or(0) + 1)));
    match api.replace(&lock.lease, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Err(locked(
            lock,
            "another run that took the expired lock first",
            0,
            i64::from(lease_seconds()),
        ))),
        Err(e) => Err(e),
    }
}

/// Takes the lock of `node` for `holder`, or says who holds it.
///
/// # Errors
/// [`DrainError::Locked`] while another holder's lease is fresh (or was renewed while this
/// run waited to take it over); API errors once retries of transient ones ran out.
pub async fn acquire(api: &Api<Lease>, ns: &str, node: &str, holder: &str) -> Result<(), DrainError> {
    acquire_lock(api, ns, &Lock::node(node), holder).await
}

/// Takes `lock` for `holder`, or says who holds it; [`acquire`] for any lock.
///
/// # Errors
/// As [`acquire`].
pub async fn acquire_lock(api: &Api<Lease>, ns: &str, lock: &Lock, holder: &str) -> Result<(), DrainError> {
    retry::transient(&format!("taking the lock of {}", lock.what), || {
        try_acquire(api, ns, lock, holder)
    })
    .await
    .map_err(|e| api_err(e, "update", ns))?
}

/// Whether `holder` still holds the lock of `node`: checked right before a step that must never
/// be taken twice (creating a migration), so that a run that was paused past its lease (a
/// frozen process, a suspended laptop) stops instead of working next to the run that took
/// the lock over.
///
/// # Errors
/// API errors once retries of transient ones ran out.
pub async fn held_by(api: &Api<Lease>, ns: &str, node: &str, holder: &str) -> Result<bool, DrainError> {
    let name = lease_name(node);
    let lease = retry::transient(&format!("checking the lock of node {node}"), || {
        api.get_opt(&name)
    })
    .await
    .map_err(|e| api_err(e, "get", ns))?;
    Ok(lease
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .as_deref()
        == Some(holder))
}

/// Why a run no longer holds its lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockLost {
    /// Who holds it now; `None` when the lease was deleted.
    pub holder: Option<String>,
}

enum Renewal {
    Renewed,
    Lost(LockLost),
}

async fn renew(api: &Api<Lease>, name: &str, holder: &str) -> Result<Renewal, kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(Renewal::Lost(LockLost { holder: None }));
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(holder) {
        return Ok(Renewal::Lost(LockLost {
            holder: spec.holder_identity.clone(),
        }));
    }
    spec.renew_time = Some(now());
    api.replace(name, &PostParams::default(), &lease)
        .await
        .map(|_| Renewal::Renewed)
}

/// Renews the lock every third of its duration until the task is aborted; retries every second
/// while the API server does not answer. The task ends, with who holds the lock now, when the
/// lock was taken over or deleted: the run must stop.
pub fn keep_renewed(api: Api<Lease>, node: String, holder: String) -> tokio::task::JoinHandle<LockLost> {
    keep_lock_renewed(api, Lock::node(&node), holder)
}

/// [`keep_renewed`] for any lock.
pub fn keep_lock_renewed(api: Api<Lease>, lock: Lock, holder: String) -> tokio::task::JoinHandle<LockLost> {
    tokio::spawn(async move {
        let period = renewal_period(lease_seconds());
        let mut pause = period;
        let mut failing = false;
        loop {
            tokio::time::sleep(pause).await;
            match renew(&api, &lock.lease, &holder).await {
                Ok(Renewal::Renewed) => {
                    if failing {
                        tracing::warn!("{}: the lock is renewed again", lock.what);
                    }
                    failing = false;
                    pause = period;
                }
                Ok(Renewal::Lost(lost)) => return lost,
                Err(e) => {
                    if !failing {
                        tracing::warn!(
                            "{}: renewing the lock failed ({}); retrying every second",
                            lock.what,
                            crate::error::chain(&e)
                        );
                    }
                    failing = true;
                    pause = Duration::from_secs(1);
                }
            }
        }
    })
}

/// Deletes the lock if `holder` still holds it, so that a run that lost its lock never frees
/// the new holder's.
///
/// # Errors
/// API errors other than 404 (gone) and 409 (changed meanwhile: not ours to delete).
pub async fn release_if_held(api: &Api<Lease>, ns: &str, node: &str, holder: &str) -> Result<(), DrainError> {
    release_lock_if_held(api, ns, &Lock::node(node), holder).await
}

/// [`release_if_held`] for any lock.
///
/// # Errors
/// As [`release_if_held`].
pub async fn release_lock_if_held(
    api: &Api<Lease>,
    ns: &str,
    lock: &Lock,
    holder: &str,
) -> Result<(), DrainError> {
    let what = format!("releasing the lock of {}", lock.what);
    let name = lock.lease.clone();
    // A renewal of ours that was in flight when the run ended may change the lease once more.
    for _ in 0..3 {
        let Some(lease) = retry::transient(&what, || api.get_opt(&name))
            .await
            .map_err(|e| api_err(e, "get", ns))?
        else {
            return Ok(());
        };
        if lease.spec.and_then(|s| s.holder_identity).as_deref() != Some(holder) {
            return Ok(());
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: lease.metadata.resource_version,
                uid: lease.metadata.uid,
            }),
            ..DeleteParams::default()
        };
        match retry::transient(&what, || delete_if_present(api, &name, &params)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(api_err(e, "delete", ns)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gone_process_of_this_user_and_host_is_dead_here() {
        let me = format!("ops@host-a:{}", std::process::id());
        // A PID far above any Linux pid_max (4194304) runs nowhere.
        assert!(holder_is_dead_here("ops@host-a:999999999", &me));
        // This very process, another host, another user, or a holder written by hand: alive.
        assert!(!holder_is_dead_here(&me, &me));
        assert!(!holder_is_dead_here(
            &format!("ops@host-a:{}", std::process::id()),
            "ops@host-a:1"
        ));
        assert!(!holder_is_dead_here("ops@host-b:999999999", &me));
        assert!(!holder_is_dead_here("root@host-a:999999999", &me));
        assert!(!holder_is_dead_here("someone else", &me));
        // The identity a rolling round names beside the process changes none of that.
        let round = format!("vm:{} as admin", std::process::id());
        assert!(holder_is_dead_here("vm:999999999 as admin", &round));
        assert!(holder_is_dead_here(
            "vm:999999999 as admin",
            &format!("vm:{}", std::process::id())
        ));
        assert!(!holder_is_dead_here(&round, &round));
        assert!(!holder_is_dead_here("other:999999999 as admin", &round));
    }

    #[test]
    fn a_refusal_says_when_the_lock_expires() {
        let err = locked(&Lock::node("n1"), "ops@laptop:42", 20, 60).to_string();
        assert!(
            err.contains("ops@laptop:42") && err.contains("expires in 40 s"),
            "{err}"
        );
        assert!(
            err.contains("the same command then takes it over and resumes"),
            "{err}"
        );
        let stale = locked(&Lock::node("n1"), "ops@laptop:42", 90, 60).to_string();
        assert!(stale.contains("expires in 0 s"), "{stale}");
    }

    #[test]
    fn a_lease_is_renewed_every_third_of_its_duration() {
        assert_eq!(renewal_period(LEASE_SECONDS), Duration::from_secs(20));
        assert_eq!(renewal_period(3), Duration::from_secs(1));
        assert_eq!(renewal_period(10), Duration::from_secs(3));
    }
}
