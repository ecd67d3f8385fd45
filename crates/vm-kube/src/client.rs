//! A kube client from kubectl's connection flags: the options, the errors, and the
//! configuration built from the kubeconfig ([`kubeconfig`]: its entries picked) with the
//! flags applied ([`flags`]).

mod flags;
mod kubeconfig;
mod options;
#[cfg(test)]
mod tests;

use kube::config::{Cluster, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use self::flags::{
    apply_request_timeout, bad_server, ca_error, check_flags, override_cluster, override_user, server_url,
};
use self::kubeconfig::{FROM_FLAGS, from_flags, pick_entries, unusable};
use crate::error::chain;

pub use self::options::{ClientError, ConnectOptions, Impersonation};

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
