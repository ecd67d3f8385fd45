//! Simulated KubeVirt: the controllers of virt-controller and the reports of virt-handler,
//! over the real API server. Each pass takes a snapshot of the watched objects ([`World`]),
//! decides per object what KubeVirt would do (pure functions in [`vm`] and [`vmi`]) and
//! performs the resulting [`Action`]s. Passes run on every watch event and every second.
//!
//! Where things are: the pass loop in [`passes`], the snapshot and the writes in
//! [`world`], the writes made on the API server in `perform`, virt-handler's node
//! heartbeat in `handler`; one module per KubeVirt controller or renderer besides
//! ([`vm`], [`vmi`], [`migration`], [`evacuation`], [`replicaset`], [`eviction`],
//! [`launcher`] for the virt-launcher pod, ...). The controllers depend on [`world`] and
//! never on this module, which only declares and re-exports them.

pub mod confidential;
pub mod config;
pub mod console_log;
pub mod evacuation;
pub mod eviction;
mod handler;
pub mod launcher;
pub mod machine;
pub mod migratable;
pub mod migration;
pub mod nad;
pub mod passes;
mod perform;
pub mod replicaset;
pub mod tsc;
pub mod vm;
pub mod vmi;
pub mod webhook;
pub mod world;

pub use passes::run;
pub use world::{Action, World, is_final, pod_is_terminating, pod_phase, str_at};
