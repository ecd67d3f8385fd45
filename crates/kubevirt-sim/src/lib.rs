//! The sandbox: a real Kubernetes control plane with KubeVirt and kubelets simulated.
//!
//! No cluster can be downloaded where this project is built and tested, but Debian ships
//! etcd and the Kubernetes 1.20.2 sources, so `scripts/install-control-plane` builds a real
//! kube-apiserver, kube-controller-manager and kube-scheduler once. This crate starts them
//! on free loopback ports and plays the parts that need real machines: the kubelets of
//! simulated nodes (like kwok), storage (a CSI provisioner and the attach/detach
//! controller, so RWO volumes pin to a node through VolumeAttachments, [`storage`]) and, on
//! top, KubeVirt's controllers.
//!
//! `vm-sandbox node down` powers a simulated machine off: its guests stop, its pods and
//! VolumeAttachments stay as the control plane last saw them. Every virt-launcher pod that
//! really ran is recorded in the state directory ([`history`]), so tests can check that no
//! VM ever ran twice at once.
//!
//! Two entry points share the same code:
//! - the `vm-sandbox` binary (`up`, `down`, `status`, `node down|up`) for people and scripts;
//! - [`Sandbox::start`], a test fixture that gives each test its own isolated sandbox and
//!   stops it on drop.

pub mod binaries;
pub mod controlplane;
pub mod crds;
pub mod error;
pub mod history;
pub mod interference;
pub mod kubelet;
pub mod kubevirt;
pub mod nodes;
pub mod outofservice;
pub mod pki;
pub mod ports;
pub mod process;
pub mod quantity;
pub mod room;
pub mod sandbox;
pub mod scenario;
pub mod shared;
pub mod sim;
pub mod state;
pub mod storage;
pub mod timings;
mod watch;

pub use error::{Error, Result};
pub use sandbox::{Sandbox, SandboxConfig};
pub use sim::{SimConfig, Simulator};
