//! The kubeconfig's side of a connection: the entries `--context`, `--cluster` and `--user`
//! pick (refused by name when unknown), the entries made up from the flags when there is no
//! kubeconfig, and an unusable kubeconfig said in a user's words.

use kube::config::{
    AuthInfo, Cluster, Kubeconfig, KubeconfigError, NamedAuthInfo, NamedCluster, NamedContext,
};

use super::options::{ClientError, ConnectOptions};
use crate::error::chain;

/// The name of the kubeconfig entries made up from the flags when there is no kubeconfig.
pub(super) const FROM_FLAGS: &str = "(from flags)";

/// A kubeconfig with one context made of `server` and no credentials: what `--server` (and
/// `--token`, `--certificate-authority`...) describe when there is no kubeconfig file.
pub(super) fn from_flags(server: &str) -> Kubeconfig {
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: FROM_FLAGS.into(),
            cluster: Some(Cluster {
                server: Some(server.into()),
                ..Cluster::default()
            }),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: FROM_FLAGS.into(),
            auth_info: Some(AuthInfo::default()),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: FROM_FLAGS.into(),
            context: Some(kube::config::Context {
                cluster: FROM_FLAGS.into(),
                user: Some(FROM_FLAGS.into()),
                ..kube::config::Context::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some(FROM_FLAGS.into()),
        ..Kubeconfig::default()
    }
}

/// Checks that `--context`, `--cluster` and `--user` name entries of the kubeconfig (kubectl
/// refuses a name it does not know, where kube-rs would quietly go without credentials), and
/// returns the context's name.
pub(super) fn pick_entries(
    kubeconfig: &Kubeconfig,
    opts: &ConnectOptions,
    location: &str,
) -> Result<String, ClientError> {
    let missing = |kind: &str, flag: &str, name: &str, known: Vec<&str>| ClientError::Kubeconfig {
        location: location.to_string(),
        message: format!(
            "{kind} \"{name}\" (--{flag}) does not exist ({kind}s: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ),
    };
    if let Some(context) = &opts.context
        && !kubeconfig.contexts.iter().any(|c| &c.name == context)
    {
        let known: Vec<&str> = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect();
        return Err(ClientError::Kubeconfig {
            location: location.to_string(),
            message: format!(
                "context \"{context}\" does not exist (contexts: {})",
                known.join(", ")
            ),
        });
    }
    if let Some(cluster) = &opts.cluster
        && !kubeconfig.clusters.iter().any(|c| &c.name == cluster)
    {
        let known = kubeconfig.clusters.iter().map(|c| c.name.as_str()).collect();
        return Err(missing("cluster", "cluster", cluster, known));
    }
    if let Some(user) = &opts.user
        && !kubeconfig.auth_infos.iter().any(|u| &u.name == user)
    {
        let known = kubeconfig.auth_infos.iter().map(|u| u.name.as_str()).collect();
        return Err(missing("user", "user", user, known));
    }
    Ok(opts
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_default())
}

/// A kubeconfig that cannot be used, in a user's words: the file that could not be read and
/// why, the first line of a YAML error, or the missing `current-context`.
pub(super) fn unusable(location: &str, err: &KubeconfigError, contexts: &[String]) -> ClientError {
    let (location, message) = match err {
        KubeconfigError::ReadConfig(io, path) => {
            let why = match io.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                std::io::ErrorKind::IsADirectory => "it is a directory".to_string(),
                _ => io.to_string(),
            };
            (path.display().to_string(), format!("cannot be read: {why}"))
        }
        KubeconfigError::Parse(yaml) => {
            let text = yaml.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            (location.to_string(), format!("not a valid kubeconfig: {first}"))
        }
        KubeconfigError::CurrentContextNotSet if contexts.is_empty() => (
            location.to_string(),
            "it defines no context (is it empty?)".to_string(),
        ),
        KubeconfigError::CurrentContextNotSet => (
            location.to_string(),
            format!(
                "no current-context is set; pass --context (contexts: {})",
                contexts.join(", ")
            ),
        ),
        other => (location.to_string(), chain(other)),
    };
    ClientError::Kubeconfig { location, message }
}
