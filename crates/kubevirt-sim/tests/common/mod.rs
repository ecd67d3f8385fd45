//! Helpers shared by the sandbox tests.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use serde_json::{Value, json};

/// Polls `check` every 200 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for the VMI `name` to be Running, and with `not_uid` to be another VMI object than
/// that one (a VM restarted), and returns it.
#[allow(dead_code)] // not every test binary uses it
pub async fn running_vmi(vmis: &Api<DynamicObject>, name: &str, not_uid: Option<&str>) -> Value {
    wait_for(
        &format!("VMI {name} to be Running"),
        Duration::from_secs(90),
        || async {
            let v = serde_json::to_value(vmis.get_opt(name).await.ok()??).ok()?;
            let fresh = not_uid.is_none_or(|u| v["metadata"]["uid"] != u);
            (fresh && v["status"]["phase"] == "Running").then_some(v)
        },
    )
    .await
}

/// `kubectl delete pod --force --grace-period=0`: the pod object goes at once, whether or
/// not its node confirms.
#[allow(dead_code)] // not every test binary uses it
pub async fn force_delete(pods: &Api<Pod>, name: &str) {
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete(name, &dp).await.unwrap();
}

/// Creates a VM `name` in `default`: runStrategy Always, 1Gi, a masquerade interface on the
/// pod network, and `volumes` (a JSON array of VMI volumes).
#[allow(dead_code)] // not every test binary uses it
pub async fn create_vm(client: kube::Client, name: &str, volumes: Value) {
    let vm: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"runStrategy": "Always", "template": {"metadata": {"labels": {"app": name}}, "spec": {
            "domain": {"resources": {"requests": {"memory": "1Gi"}}, "devices": {"interfaces": [{"name": "default", "masquerade": {}}]}},
            "networks": [{"name": "default", "pod": {}}],
            "volumes": volumes,
        }}},
    }))
    .unwrap();
    let vms: Api<DynamicObject> = Api::namespaced_with(
        client,
        "default",
        &kubevirt_sim::crds::kubevirt_resource("VirtualMachine"),
    );
    vms.create(&PostParams::default(), &vm).await.unwrap();
}
