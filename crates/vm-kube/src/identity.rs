//! Whom the API server takes a run for: its own answer (SelfSubjectReview,
//! `authentication.k8s.io/v1` from Kubernetes 1.28, `v1beta1` on 1.27) where it serves one,
//! else the name of the kubeconfig's user entry the client was built from. Older servers
//! (no review API) fall back quietly.

use kube::Client;
use kube::api::PostParams;

/// The API versions of SelfSubjectReview, newest first.
const REVIEW_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// The user name the API server authenticates `client` as, or else `kubeconfig_user`; `None`
/// when neither is known.
pub async fn acting_as(client: &Client, kubeconfig_user: Option<&str>) -> Option<String> {
    for version in REVIEW_VERSIONS {
        if let Some(name) = self_subject_review(client, version).await {
            return Some(name);
        }
    }
    kubeconfig_user.map(str::to_string)
}

/// `status.userInfo.username` of a SelfSubjectReview in `version`; `None` when the server
/// does not serve that version (or refuses, or answers without a name).
async fn self_subject_review(client: &Client, version: &str) -> Option<String> {
    let group = format!("authentication.k8s.io/{version}");
    let body = serde_json::json!({"apiVersion": group, "kind": "SelfSubjectReview"});
    let request = kube::core::Request::new(format!("/apis/{group}/selfsubjectreviews"))
        .create(&PostParams::default(), serde_json::to_vec(&body).ok()?)
        .ok()?;
    match client.request::<serde_json::Value>(request).await {
        Ok(review) => review
            .pointer("/status/userInfo/username")
            .and_then(serde_json::Value::as_str)
            .filter(|name| !name.is_empty())
            .map(str::to_string),
        Err(e) => {
            tracing::debug!("SelfSubjectReview {version}: {}", crate::error::chain(&e));
            None
        }
    }
}
