//! kubectl's connection flags checked and applied over the kubeconfig's entries: `--server`,
//! `--certificate-authority`, `--insecure-skip-tls-verify`, `--tls-server-name`, `--token`,
//! `--as`, `--as-group`, `--request-timeout`.

use std::path::Path;
use std::time::Duration;

use kube::Config;
use kube::config::{AuthInfo, Cluster};

use super::options::{ClientError, ConnectOptions};

/// The combinations of flags that kubectl refuses, refused the same way.
pub(super) fn check_flags(opts: &ConnectOptions) -> Result<(), ClientError> {
    if opts.impersonate.is_none() && !opts.impersonate_groups.is_empty() {
        return Err(ClientError::Flag {
            flag: format!("--as-group {}", opts.impersonate_groups.join(",")),
            message: "impersonating groups needs a user to impersonate: add --as USER".into(),
        });
    }
    if let (true, Some(ca)) = (opts.insecure_skip_tls_verify, &opts.certificate_authority) {
        return Err(ClientError::Flag {
            flag: format!("--insecure-skip-tls-verify with --certificate-authority {}", ca.display()),
            message: "a CA file to verify the server with and no verification at all contradict each other: give one of them".into(),
        });
    }
    for (flag, value) in [("--as", &opts.impersonate), ("--token", &opts.token)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(ClientError::Flag {
                flag: flag.into(),
                message: "must not be empty".into(),
            });
        }
    }
    Ok(())
}

/// `--server`'s text as a URL; `https://` is assumed when it names no scheme, as kubectl does.
pub(super) fn server_url(text: &str) -> Result<String, ClientError> {
    let url = if text.contains("://") {
        text.to_string()
    } else {
        format!("https://{text}")
    };
    let (scheme, rest) = url.split_once("://").unwrap_or_default();
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if matches!(scheme, "https" | "http") && !host.is_empty() && !url.contains(char::is_whitespace) {
        Ok(url)
    } else {
        Err(bad_server(text))
    }
}

pub(super) fn bad_server(text: &str) -> ClientError {
    ClientError::Flag {
        flag: format!("--server {text}"),
        message: "not the URL of an API server, such as https://10.0.0.1:6443".into(),
    }
}

/// The cluster entry with `--server`, `--certificate-authority`, `--tls-server-name` and
/// `--insecure-skip-tls-verify` applied, as kubectl applies them: a CA file or the insecure
/// flag replaces both the entry's CA and its insecure setting.
pub(super) fn override_cluster(
    cluster: &mut Cluster,
    opts: &ConnectOptions,
    server: Option<&str>,
) -> Result<(), ClientError> {
    if let Some(server) = server {
        cluster.server = Some(server.to_string());
    }
    if let Some(ca) = &opts.certificate_authority {
        let text = std::fs::read(ca).map_err(|e| ca_error(ca, &read_error(&e)))?;
        if !String::from_utf8_lossy(&text).contains("-----BEGIN CERTIFICATE-----") {
            return Err(ca_error(
                ca,
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            ));
        }
        let absolute = std::path::absolute(ca).unwrap_or_else(|_| ca.clone());
        cluster.certificate_authority = Some(absolute.display().to_string());
        cluster.certificate_authority_data = None;
        cluster.insecure_skip_tls_verify = Some(false);
    }
    if opts.insecure_skip_tls_verify {
        cluster.insecure_skip_tls_verify = Some(true);
        cluster.certificate_authority = None;
        cluster.certificate_authority_data = None;
    }
    if let Some(name) = &opts.tls_server_name {
        cluster.tls_server_name = Some(name.clone());
    }
    Ok(())
}

/// The user's credentials with `--token`, `--as` and `--as-group` applied. A token replaces
/// every other credential of the entry (token file, basic auth, exec and auth-provider plugins,
/// client certificate), so that the API server authenticates the token's owner.
pub(super) fn override_user(auth: &mut AuthInfo, opts: &ConnectOptions) -> Result<(), ClientError> {
    if let Some(token) = &opts.token {
        // kube-rs keeps the token as a secrecy::SecretString, which only its deserializer
        // builds here without one more dependency.
        let with_token: AuthInfo =
            serde_json::from_value(serde_json::json!({ "token": token })).map_err(|e| ClientError::Flag {
                flag: "--token".into(),
                message: e.to_string(),
            })?;
        *auth = AuthInfo {
            token: with_token.token,
            impersonate: auth.impersonate.take(),
            impersonate_uid: auth.impersonate_uid.take(),
            impersonate_groups: auth.impersonate_groups.take(),
            impersonate_user_extra: auth.impersonate_user_extra.take(),
            ..AuthInfo::default()
        };
    }
    if let Some(user) = &opts.impersonate {
        // As kubectl: the flags replace the entry's impersonation (`as:`, `as-groups:`) whole.
        auth.impersonate = Some(user.clone());
        auth.impersonate_uid = None;
        auth.impersonate_user_extra = None;
        auth.impersonate_groups =
            (!opts.impersonate_groups.is_empty()).then(|| opts.impersonate_groups.clone());
        for (flag, value) in
            std::iter::once(("--as", user)).chain(opts.impersonate_groups.iter().map(|g| ("--as-group", g)))
        {
            if value.chars().any(char::is_control) {
                return Err(ClientError::Flag {
                    flag: format!("{flag} {value}"),
                    message: "cannot be sent in an HTTP header (control characters?)".into(),
                });
            }
        }
    }
    Ok(())
}

/// `--request-timeout`: each request gives up when its answer does not come within `timeout`
/// (counted from when the request is sent), and connecting or sending takes no longer either.
pub(super) fn apply_request_timeout(config: &mut Config, timeout: Duration) {
    config.read_timeout = Some(timeout);
    config.reset_reader_on_write = true;
    config.connect_timeout = Some(config.connect_timeout.map_or(timeout, |t| t.min(timeout)));
    config.write_timeout = Some(config.write_timeout.map_or(timeout, |t| t.min(timeout)));
}

pub(super) fn ca_error(ca: &Path, message: &str) -> ClientError {
    ClientError::Flag {
        flag: format!("--certificate-authority {}", ca.display()),
        message: message.to_string(),
    }
}

fn read_error(io: &std::io::Error) -> String {
    match io.kind() {
        std::io::ErrorKind::NotFound => "cannot be read: no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "cannot be read: permission denied".to_string(),
        std::io::ErrorKind::IsADirectory => "cannot be read: it is a directory".to_string(),
        _ => format!("cannot be read: {io}"),
    }
}
