//! A kube client from kubectl's connection flags: the options, the errors, and the
//! configuration built from the kubeconfig ([`kubeconfig`]: its entries picked) with the
//! flags applied ([`flags`]).

mod flags;
mod kubeconfig;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{Cluster, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use self::flags::{
    apply_request_timeout, bad_server, ca_error, check_flags, override_cluster, override_user, server_url,
};
use self::kubeconfig::{FROM_FLAGS, from_flags, pick_entries, unusable};
use crate::error::chain;

/// kubectl's connection flags.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// `--kubeconfig`: a file instead of `$KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: a context of the kubeconfig instead of its current one.
    pub context: Option<String>,
    /// `--cluster`: a cluster entry of the kubeconfig instead of the context's.
    pub cluster: Option<String>,
    /// `--user`: a user entry of the kubeconfig instead of the context's.
    pub user: Option<String>,
    /// `-s/--server`: the API server's URL instead of the cluster entry's (`https://` when it
    /// names no scheme).
    pub server: Option<String>,
    /// `--token`: a bearer token instead of the user entry's credentials.
    pub token: Option<String>,
    /// `--certificate-authority`: a PEM file of CA certificates instead of the cluster entry's.
    pub certificate_authority: Option<PathBuf>,
    /// `--tls-server-name`: the name the server's certificate is checked against (and sent as
    /// SNI) instead of the URL's host.
    pub tls_server_name: Option<String>,
    /// `--insecure-skip-tls-verify`: accept any server certificate. Only when given.
    pub insecure_skip_tls_verify: bool,
    /// `--as`: the user to impersonate.
    pub impersonate: Option<String>,
    /// `--as-group`: the groups to impersonate (with `--as` only).
    pub impersonate_groups: Vec<String>,
    /// `--request-timeout`: how long to wait for the answer to each request; `None` (kubectl's
    /// `0`) waits as long as it takes.
    pub request_timeout: Option<Duration>,
}

impl ConnectOptions {
    /// Whom the API server checks the rights of: the impersonated user and groups, when
    /// `--as` is given.
    #[must_use]
    pub fn acting_as(&self) -> Option<Impersonation> {
        self.impersonate.as_ref().map(|user| Impersonation {
            user: user.clone(),
            groups: self.impersonate_groups.clone(),
        })
    }
}

/// `--as USER` and `--as-group GROUP...`: whose rights the API server applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impersonation {
    /// The user.
    pub user: String,
    /// The groups, possibly none.
    pub groups: Vec<String>,
}

impl Impersonation {
    /// The kubectl flags that impersonate the same user and groups, for a `kubectl` line to
    /// copy: ` --as jane --as-group ops`.
    #[must_use]
    pub fn flags(&self) -> String {
        let mut flags = format!(" --as {}", shell_word(&self.user));
        for group in &self.groups {
            flags.push_str(&format!(" --as-group {}", shell_word(group)));
        }
        flags
    }
}

impl std::fmt::Display for Impersonation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "user {}", self.user)?;
        match self.groups.as_slice() {
            [] => Ok(()),
            [one] => write!(f, " in group {one}"),
            many => write!(f, " in groups {}", many.join(", ")),
        }
    }
}

/// `word` quoted for a POSIX shell when it holds anything but plain characters.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@=+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
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
    /// A connection flag cannot be used as given.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag and its value, as typed: `--certificate-authority ca.pem`.
        flag: String,
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
    /// The name of the kubeconfig's user entry the client was built from (`None` when the
    /// flags alone describe the cluster): whom the run acts as, short of the API server's word.
    pub user: Option<String>,
}

/// Whose rights the API server applies to requests made with `opts`: the `--as` flags, or else
/// the impersonation of the kubeconfig's user entry (`as:`, `as-groups:`); `None` when neither
/// impersonates. When the kubeconfig cannot be read, the flags alone answer.
pub async fn acting_as(opts: &ConnectOptions) -> Option<Impersonation> {
    match config(opts).await {
        Ok((config, _)) => config.auth_info.impersonate.map(|user| Impersonation {
            user,
            groups: config.auth_info.impersonate_groups.unwrap_or_default(),
        }),
        Err(_) => opts.acting_as(),
    }
}

/// Builds a client as kubectl would from `opts`.
///
/// Certificates are verified against the kubeconfig's CA (or `--certificate-authority`);
/// `insecure-skip-tls-verify` is only honoured when the kubeconfig itself says so or the flag
/// is given, as kubectl does.
///
/// # Errors
/// [`ClientError`] naming the kubeconfig and the context, or the flag that cannot be used.
pub async fn connect(opts: &ConnectOptions) -> Result<Connection, ClientError> {
    let Resolved {
        config,
        context,
        user,
    } = resolve(opts).await?;
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| ClientError::Build {
        context,
        message: chain(&e),
    })?;
    Ok(Connection {
        client,
        default_namespace,
        user,
    })
}

/// The client configuration `opts` select, and the name of the context it comes from: the
/// kubeconfig's entries, with kubectl's overriding flags applied.
///
/// # Errors
/// [`ClientError`] naming the kubeconfig and the context, or the flag that cannot be used.
pub async fn config(opts: &ConnectOptions) -> Result<(Config, String), ClientError> {
    resolve(opts).await.map(|r| (r.config, r.context))
}

/// The name of the kubeconfig user entry `opts` select; `None` when the flags alone describe
/// the cluster, or the kubeconfig cannot be used.
pub async fn user_entry(opts: &ConnectOptions) -> Option<String> {
    resolve(opts).await.ok().and_then(|r| r.user)
}

/// What [`resolve`] found.
struct Resolved {
    config: Config,
    context: String,
    /// The kubeconfig user entry's name; `None` for the entries made up from the flags.
    user: Option<String>,
}

/// The work of [`config`], with the name of the user entry used.
async fn resolve(opts: &ConnectOptions) -> Result<Resolved, ClientError> {
    check_flags(opts)?;
    let server = opts.server.as_deref().map(server_url).transpose()?;
    let location = opts.kubeconfig.as_ref().map_or_else(
        || std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".to_string()),
        |p| p.display().to_string(),
    );
    let read = match &opts.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    };
    let mut kubeconfig = match (read, &server) {
        // kubectl needs no kubeconfig when --server says where the cluster is.
        (Err(KubeconfigError::ReadConfig(io, _)), Some(url))
            if opts.kubeconfig.is_none() && io.kind() == std::io::ErrorKind::NotFound =>
        {
            from_flags(url)
        }
        (read, _) => read.map_err(|e| unusable(&location, &e, &[]))?,
    };
    let context = pick_entries(&kubeconfig, opts, &location)?;
    let user = opts
        .user
        .clone()
        .or_else(|| {
            kubeconfig
                .contexts
                .iter()
                .find(|c| c.name == context)
                .and_then(|c| c.context.as_ref())
                .and_then(|c| c.user.clone())
        })
        .filter(|u| u != FROM_FLAGS);
    let cluster_name = opts.cluster.clone().or_else(|| {
        kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == context)
            .and_then(|c| c.context.as_ref())
            .map(|c| c.cluster.clone())
    });
    if let Some(entry) = kubeconfig
        .clusters
        .iter_mut()
        .find(|c| Some(&c.name) == cluster_name.as_ref())
    {
        override_cluster(
            entry.cluster.get_or_insert_with(Cluster::default),
            opts,
            server.as_deref(),
        )?;
    }
    let options = KubeConfigOptions {
        context: opts.context.clone(),
        cluster: opts.cluster.clone(),
        user: opts.user.clone(),
    };
    let contexts: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| match (&e, &opts.certificate_authority) {
            (
                KubeconfigError::LoadCertificateAuthority(_) | KubeconfigError::ParseCertificates(_),
                Some(ca),
            ) => ca_error(ca, &chain(&e)),
            (KubeconfigError::ParseClusterUrl(_), _) if opts.server.is_some() => {
                bad_server(opts.server.as_deref().unwrap_or_default())
            }
            _ => unusable(&location, &e, &contexts),
        })?;
    if let Some(ca) = &opts.certificate_authority
        && config.root_cert.as_ref().is_none_or(Vec::is_empty)
    {
        return Err(ca_error(
            ca,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    override_user(&mut config.auth_info, opts)?;
    if let Some(timeout) = opts.request_timeout {
        apply_request_timeout(&mut config, timeout);
    }
    Ok(Resolved {
        config,
        context,
        user,
    })
}
