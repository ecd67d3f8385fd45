//! virt-api's pod-eviction webhook (reference §3.1), served over TLS on loopback and
//! registered with the API server as KubeVirt registers it, so a plain `kubectl drain`
//! meets the same answers as on a real cluster: a launcher pod of a migratable
//! `LiveMigrate` VMI is not evicted but its VMI is marked (`status.evacuationNodeName`)
//! and the evacuation controller migrates it; a non-migratable one is refused for ever;
//! completed launcher pods (after a migration) are let go. Every denial is HTTP 429, which
//! `kubectl drain` retries every 5 s.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::world::str_at;
use crate::crds::kubevirt_resource;
use crate::{Error, Result};

/// Name of the webhook configuration, as KubeVirt names it.
pub const CONFIG_NAME: &str = "virt-api-validator";
/// Name of the eviction webhook, as KubeVirt names it.
pub const WEBHOOK_NAME: &str = "virt-launcher-eviction-interceptor.kubevirt.io";
const PATH: &str = "/pod-eviction-validate";

/// A CA and a serving certificate for 127.0.0.1, made fresh for each simulator.
struct Tls {
    ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn make_tls() -> Result<Tls> {
    let err = |e: rcgen::Error| Error::Other(format!("generating the webhook certificate: {e}"));
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubevirt-sim virt-api CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(err)?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::V4(
            Ipv4Addr::LOCALHOST,
        )));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "virt-api.kubevirt.svc");
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;
    Ok(Tls {
        ca_pem: ca.pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    })
}

/// Starts the webhook server on a free loopback port and registers it. Runs until the
/// returned task is aborted.
pub async fn start(client: kube::Client) -> Result<tokio::task::JoinHandle<()>> {
    let tls = make_tls()?;
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .map_err(|e| Error::io("binding the webhook port", "127.0.0.1:0", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("reading the webhook port", "127.0.0.1", e))?
        .port();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Other(format!("webhook TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(
                vec![tls.cert_der.clone().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(tls.key_der.clone().into()),
            )
            .map_err(|e| Error::Other(format!("webhook TLS: {e}")))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    register(&client, &format!("https://127.0.0.1:{port}{PATH}"), &tls.ca_pem).await?;
    tracing::info!("virt-api eviction webhook on 127.0.0.1:{port}");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let client = client.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| handle(client.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

async fn register(client: &kube::Client, url: &str, ca_pem: &str) -> Result<()> {
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIG_NAME, "labels": {"kubevirt.io": "virt-api-validator"}},
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "admissionReviewVersions": ["v1", "v1beta1"],
            "clientConfig": {"url": url, "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem)},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"], "resources": ["pods/eviction"], "scope": "*"}],
            "failurePolicy": "Fail",
            "sideEffects": "NoneOnDryRun",
            "timeoutSeconds": 10,
        }],
    });
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    api.patch(
        CONFIG_NAME,
        &PatchParams::apply("kubevirt-sim").force(),
        &Patch::Apply(&config),
    )
    .await
    .map_err(|e| Error::kube("registering the eviction webhook", e))?;
    Ok(())
}

async fn handle(
    client: kube::Client,
    req: Request<Incoming>,
) -> std::result::Result<Response<Full<Bytes>>, hyper::Error> {
    let body = req.into_body().collect().await?.to_bytes();
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let request = review.get("request").cloned().unwrap_or(Value::Null);
    let verdict = admit(&client, &request).await;
    let mut response =
        json!({"uid": request.get("uid").cloned().unwrap_or(json!("")), "allowed": verdict.is_none()});
    if let Some(message) = verdict {
        response["status"] = json!({"code": 429, "message": message, "reason": "TooManyRequests"});
    }
    let out = json!({
        "apiVersion": review.get("apiVersion").cloned().unwrap_or(json!("admission.k8s.io/v1")),
        "kind": "AdmissionReview",
        "response": response,
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(out.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// KubeVirt's decision for one eviction: `None` allows, `Some(message)` denies with 429.
async fn admit(client: &kube::Client, request: &Value) -> Option<String> {
    let ns = str_at(request, "/namespace").unwrap_or("default");
    let pod_name = str_at(request, "/name")?;
    let dry_run = request.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = pods.get(pod_name).await.ok()?;
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if labels.get("kubevirt.io").map(String::as_str) != Some("virt-launcher")
        || phase == "Succeeded"
        || phase == "Failed"
    {
        return None;
    }
    let vmi_name = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubevirt.io/domain"))
        .cloned()?;
    let vmis: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &kubevirt_resource("VirtualMachineInstance"));
    let vmi = match vmis.get(&vmi_name).await {
        Ok(v) => serde_json::to_value(v).unwrap_or(Value::Null),
        Err(e) => return Some(format!("failed to get VMI {ns}/{vmi_name}: {e}")),
    };
    let migratable = vmi
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "LiveMigratable" && c["status"] == "True")
        });
    let strategy = str_at(&vmi, "/spec/evictionStrategy").unwrap_or("None");
    let mark = match strategy {
        "LiveMigrate" if !migratable => {
            return Some(format!(
                "VMI {vmi_name} is configured with an eviction strategy but is not live-migratable"
            ));
        }
        "LiveMigrate" | "External" => true,
        "LiveMigrateIfPossible" => migratable,
        _ => false,
    };
    if !mark {
        return None;
    }
    if str_at(&vmi, "/status/evacuationNodeName").is_some_and(|n| !n.is_empty()) {
        return Some(format!(
            "Evacuation in progress: Eviction triggered evacuation of VMI \"{ns}/{vmi_name}\""
        ));
    }
    let pod_node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    if str_at(&vmi, "/status/nodeName") != Some(pod_node.as_str()) {
        return Some("Eviction request for target Pod".into());
    }
    // The main resource: the VMI has no status subresource. The resourceVersion makes the
    // patch conditional, like KubeVirt's JSON-patch test.
    let patch = json!({
        "metadata": {"resourceVersion": str_at(&vmi, "/metadata/resourceVersion")},
        "status": {"evacuationNodeName": pod_node},
    });
    let pp = PatchParams {
        dry_run,
        field_manager: Some("virt-api".into()),
        ..Default::default()
    };
    if let Err(e) = vmis.patch(&vmi_name, &pp, &Patch::Merge(&patch)).await {
        return Some(format!("failed to mark VMI {ns}/{vmi_name} for evacuation: {e}"));
    }
    Some(format!(
        "Eviction triggered evacuation of VMI \"{ns}/{vmi_name}\""
    ))
}
