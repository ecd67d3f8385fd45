//! Someone else at work on the cluster: an [`Editor`] keeps changing one object (a counter in
//! the annotation [`ANNOTATION`]) as fast as the API server lets it, so that a plugin's
//! read-then-write of the same object meets the conflicts (HTTP 409) it meets on a busy
//! cluster, and a test can check that the plugin neither fails on them nor undoes the edits.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use crate::controlplane::client_from_kubeconfig;
use crate::crds::kubevirt_resource;
use crate::{Error, Result};

/// The annotation the editor changes.
pub const ANNOTATION: &str = "kubevirt-sim/edited-by-someone-else";

/// What the editor changes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A KubeVirt VirtualMachine.
    VirtualMachine {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A Node.
    Node {
        /// Name.
        name: String,
    },
}

/// An editor running on its own thread until [`Editor::stop`].
pub struct Editor {
    stop: Arc<AtomicBool>,
    last: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Editor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Editor")
            .field("last", &self.last.load(Ordering::Relaxed))
            .finish()
    }
}

async fn edit(client: &kube::Client, target: &Target, value: u64) -> std::result::Result<(), kube::Error> {
    let patch = json!({"metadata": {"annotations": {ANNOTATION: value.to_string()}}});
    let pp = PatchParams::default();
    match target {
        Target::VirtualMachine { namespace, name } => {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &kubevirt_resource("VirtualMachine"));
            api.patch(name, &pp, &Patch::Merge(&patch)).await.map(|_| ())
        }
        Target::Node { name } => {
            let api: Api<Node> = Api::all(client.clone());
            api.patch(name, &pp, &Patch::Merge(&patch)).await.map(|_| ())
        }
    }
}

impl Editor {
    /// Starts changing `target` every `every` (as admin, through `kubeconfig`), on a thread
    /// with its own runtime and client.
    pub fn start(kubeconfig: &Path, target: Target, every: Duration) -> Result<Editor> {
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(AtomicU64::new(0));
        let kubeconfig = kubeconfig.to_path_buf();
        let (stop_flag, last_written) = (stop.clone(), last.clone());
        let thread = std::thread::Builder::new()
            .name("kubevirt-sim-editor".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(client) = client_from_kubeconfig(&kubeconfig).await else {
                        return;
                    };
                    let mut value = 0;
                    while !stop_flag.load(Ordering::Relaxed) {
                        value += 1;
                        if edit(&client, &target, value).await.is_ok() {
                            last_written.store(value, Ordering::Relaxed);
                        }
                        tokio::time::sleep(every).await;
                    }
                });
            })
            .map_err(|e| Error::Other(format!("starting the editor thread: {e}")))?;
        Ok(Editor {
            stop,
            last,
            thread: Some(thread),
        })
    }

    /// Stops editing; returns the last value written (0: no edit went through).
    pub fn stop(mut self) -> u64 {
        self.halt();
        self.last.load(Ordering::Relaxed)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Editor {
    fn drop(&mut self) {
        self.halt();
    }
}
