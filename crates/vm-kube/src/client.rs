//! A kube client from kubectl's connection flags.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use crate::error::chain;

/// kubectl's connection flags.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// `--kubeconfig`: a file instead of `$KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: a context of the kubeconfig instead of its current one.
    pub context: Option<String>,
}

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig could not be read or has no such context.
    #[error("kubeconfig {location}: {message}")]
    Kubeconfig {
        /// The file, or where it was looked for.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// The configuration was read but the client could not be built from it.
    #[error("cannot build a client for context {context}: {message}")]
    Build {
        /// The context used.
        context: String,
        /// What failed.
        message: String,
    },
}

/// A connected client and the namespace the context selects (`default` if none).
pub struct Connection {
    /// The client.
    pub client: Client,
    /// The context's namespace.
    pub default_namespace: String,
}

/// Builds a client as kubectl would from `opts`.
///
/// Certificates are verified against the kubeconfig's CA; `insecure-skip-tls-verify` is only
/// honoured when the kubeconfig itself says so, as kubectl does.
///
/// # Errors
/// [`ClientError`] naming the kubeconfig and the context.
pub async fn connect(opts: &ConnectOptions) -> Result<Connection, ClientError> {
    let location = opts.kubeconfig.as_ref().map_or_else(
        || std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".to_string()),
        |p| p.display().to_string(),
    );
    let kubeconfig = match &opts.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(|e| unusable(&location, &e, &[]))?;
    if let Some(context) = &opts.context
        && !kubeconfig.contexts.iter().any(|c| &c.name == context)
    {
        let known: Vec<&str> = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect();
        return Err(ClientError::Kubeconfig {
            location,
            message: format!(
                "context \"{context}\" does not exist (contexts: {})",
                known.join(", ")
            ),
        });
    }
    let options = KubeConfigOptions {
        context: opts.context.clone(),
        ..KubeConfigOptions::default()
    };
    let context = opts
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_default();
    let contexts: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| unusable(&location, &e, &contexts))?;
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| ClientError::Build {
        context,
        message: chain(&e),
    })?;
    Ok(Connection {
        client,
        default_namespace,
    })
}

/// A kubeconfig that cannot be used, in a user's words: the file that could not be read and
/// why, the first line of a YAML error, or the missing `current-context`.
fn unusable(location: &str, err: &KubeconfigError, contexts: &[String]) -> ClientError {
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
