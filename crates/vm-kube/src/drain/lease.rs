//! The per-node lock: a `coordination.k8s.io/v1` Lease named `vm-drain-safe-<node>`.
//!
//! A run holds it while it works and renews it; another run refuses while the holder renewed
//! it within the lease duration, and takes it over once it has expired (a killed run). A run
//! that ends, finished or stopped, deletes it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use super::DrainError;
use crate::delete::delete_if_present;
use crate::error::{ApiError, Scope};

/// How long a lease stays valid without renewal.
pub const LEASE_SECONDS: i32 = 60;

/// The lease name for `node`.
#[must_use]
pub fn lease_name(node: &str) -> String {
    format!("vm-drain-safe-{node}")
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

/// Takes the lock of `node` for `holder`, or says who holds it.
///
/// # Errors
/// [`DrainError::Locked`] while another holder's lease is fresh; API errors.
pub async fn acquire(api: &Api<Lease>, ns: &str, node: &str, holder: &str) -> Result<(), DrainError> {
    let name = lease_name(node);
    match api.get_opt(&name).await.map_err(|e| api_err(e, "get", ns))? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(ns.to_string()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(holder.to_string()),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    ..LeaseSpec::default()
                }),
            };
            api.create(&PostParams::default(), &lease)
                .await
                .map_err(|e| match e {
                    kube::Error::Api(s) if s.code == 409 => DrainError::Locked {
                        node: node.to_string(),
                        holder: "another run that started at the same moment".into(),
                        age_seconds: 0,
                    },
                    e => api_err(e, "create", ns),
                })?;
            Ok(())
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let current = spec.holder_identity.clone().unwrap_or_default();
            let age = spec
                .renew_time
                .as_ref()
                .map_or(i64::MAX, |t| Timestamp::now().as_second() - t.0.as_second());
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
            if current != holder && age < duration {
                return Err(DrainError::Locked {
                    node: node.to_string(),
                    holder: current,
                    age_seconds: age,
                });
            }
            // Expired (or ours): take it over. The resourceVersion makes a racing take-over fail.
            lease.spec = Some(LeaseSpec {
                holder_identity: Some(holder.to_string()),
                lease_duration_seconds: Some(LEASE_SECONDS),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + 1),
                ..LeaseSpec::default()
            });
            api.replace(&lease_name(node), &PostParams::default(), &lease)
                .await
                .map_err(|e| match e {
                    kube::Error::Api(s) if s.code == 409 => DrainError::Locked {
                        node: node.to_string(),
                        holder: "another run that took the expired lock first".into(),
                        age_seconds: 0,
                    },
                    e => api_err(e, "update", ns),
                })?;
            Ok(())
        }
    }
}

/// Renews the lock every third of its duration until the task is dropped.
pub fn keep_renewed(api: Api<Lease>, node: String, holder: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs((LEASE_SECONDS / 3) as u64)).await;
            let Ok(Some(mut lease)) = api.get_opt(&lease_name(&node)).await else {
                continue;
            };
            let Some(spec) = lease.spec.as_mut() else { continue };
            if spec.holder_identity.as_deref() != Some(holder.as_str()) {
                return; // Taken over: stop renewing; the run notices through its own checks.
            }
            spec.renew_time = Some(now());
            let _ = api
                .replace(&lease_name(&node), &PostParams::default(), &lease)
                .await;
        }
    })
}

/// Deletes the lock (for `--uncordon`); a missing lock is fine.
///
/// # Errors
/// API errors other than 404.
pub async fn release(api: &Api<Lease>, ns: &str, node: &str) -> Result<(), DrainError> {
    delete_if_present(api, &lease_name(node), &DeleteParams::default())
        .await
        .map_err(|e| api_err(e, "delete", ns))?;
    Ok(())
}
