//! A kube client from kubectl's connection flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{
    AuthInfo, Cluster, KubeConfigOptions, Kubeconfig, KubeconfigError, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use kube::{Client, Config};

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
    let (config, context) = config(opts).await?;
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

/// The name of the kubeconfig entries made up from the flags when there is no kubeconfig.
const FROM_FLAGS: &str = "(from flags)";

/// The client configuration `opts` select, and the name of the context it comes from: the
/// kubeconfig's entries, with kubectl's overriding flags applied.
///
/// # Errors
/// [`ClientError`] naming the kubeconfig and the context, or the flag that cannot be used.
pub async fn config(opts: &ConnectOptions) -> Result<(Config, String), ClientError> {
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
    Ok((config, context))
}

/// The combinations of flags that kubectl refuses, refused the same way.
fn check_flags(opts: &ConnectOptions) -> Result<(), ClientError> {
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
fn server_url(text: &str) -> Result<String, ClientError> {
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

fn bad_server(text: &str) -> ClientError {
    ClientError::Flag {
        flag: format!("--server {text}"),
        message: "not the URL of an API server, such as https://10.0.0.1:6443".into(),
    }
}

/// A kubeconfig with one context made of `server` and no credentials: what `--server` (and
/// `--token`, `--certificate-authority`...) describe when there is no kubeconfig file.
fn from_flags(server: &str) -> Kubeconfig {
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
fn pick_entries(
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

/// The cluster entry with `--server`, `--certificate-authority`, `--tls-server-name` and
/// `--insecure-skip-tls-verify` applied, as kubectl applies them: a CA file or the insecure
/// flag replaces both the entry's CA and its insecure setting.
fn override_cluster(
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
fn override_user(auth: &mut AuthInfo, opts: &ConnectOptions) -> Result<(), ClientError> {
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
fn apply_request_timeout(config: &mut Config, timeout: Duration) {
    config.read_timeout = Some(timeout);
    config.reset_reader_on_write = true;
    config.connect_timeout = Some(config.connect_timeout.map_or(timeout, |t| t.min(timeout)));
    config.write_timeout = Some(config.write_timeout.map_or(timeout, |t| t.min(timeout)));
}

fn ca_error(ca: &Path, message: &str) -> ClientError {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A kubeconfig with two clusters, two users and one context (c1, alice), in a temp dir.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    const KUBECONFIG: &str = r"apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster:
    server: https://c1.example:6443
    insecure-skip-tls-verify: true
- name: c2
  cluster:
    server: https://c2.example:6443
    tls-server-name: kube.c2.example
contexts:
- name: ctx
  context: {cluster: c1, user: alice, namespace: shop}
current-context: ctx
users:
- name: alice
  user:
    username: alice
    password: secret
    as: someone
    as-groups: [old-group]
- name: bob
  user:
    username: bob
    password: secret
";

    /// Bytes that kube-rs reads as one certificate (it does not decode the X.509 inside).
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("config"), KUBECONFIG).unwrap();
            std::fs::write(dir.path().join("ca.pem"), PEM).unwrap();
            std::fs::write(dir.path().join("not-pem.txt"), "hello").unwrap();
            Self { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn options(&self) -> ConnectOptions {
            ConnectOptions {
                kubeconfig: Some(self.path("config")),
                ..ConnectOptions::default()
            }
        }
    }

    fn config_of(opts: &ConnectOptions) -> Result<Config, ClientError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(config(opts))
            .map(|(config, _)| config)
    }

    fn error_of(opts: &ConnectOptions) -> String {
        config_of(opts).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn without_flags_the_context_decides() {
        let fixture = Fixture::new();
        let config = config_of(&fixture.options()).unwrap();
        assert_eq!(config.cluster_url.to_string(), "https://c1.example:6443/");
        assert_eq!(config.default_namespace, "shop");
        assert!(config.accept_invalid_certs, "the kubeconfig's own setting");
        assert_eq!(config.auth_info.username.as_deref(), Some("alice"));
        assert_eq!(config.auth_info.impersonate.as_deref(), Some("someone"));
        assert_eq!(config.read_timeout, None);
    }

    #[test]
    fn cluster_and_user_pick_the_kubeconfig_entries() {
        let fixture = Fixture::new();
        let config = config_of(&ConnectOptions {
            cluster: Some("c2".into()),
            user: Some("bob".into()),
            ..fixture.options()
        })
        .unwrap();
        assert_eq!(config.cluster_url.to_string(), "https://c2.example:6443/");
        assert_eq!(config.tls_server_name.as_deref(), Some("kube.c2.example"));
        assert!(!config.accept_invalid_certs);
        assert_eq!(config.auth_info.username.as_deref(), Some("bob"));
        assert_eq!(config.default_namespace, "shop", "still the context's namespace");
    }

    #[test]
    fn an_unknown_cluster_or_user_is_refused_with_the_known_ones() {
        let fixture = Fixture::new();
        let err = error_of(&ConnectOptions {
            user: Some("carol".into()),
            ..fixture.options()
        });
        assert!(
            err.contains("user \"carol\" (--user) does not exist (users: alice, bob)"),
            "{err}"
        );
        let err = error_of(&ConnectOptions {
            cluster: Some("c3".into()),
            ..fixture.options()
        });
        assert!(
            err.contains("cluster \"c3\" (--cluster) does not exist (clusters: c1, c2)"),
            "{err}"
        );
    }

    #[test]
    fn server_replaces_the_url_and_defaults_to_https() {
        let fixture = Fixture::new();
        let config = config_of(&ConnectOptions {
            server: Some("10.0.0.9:6443".into()),
            ..fixture.options()
        })
        .unwrap();
        assert_eq!(config.cluster_url.to_string(), "https://10.0.0.9:6443/");
        for bad in ["ftp://x", "https://", "http://a b", ""] {
            let err = error_of(&ConnectOptions {
                server: Some(bad.into()),
                ..fixture.options()
            });
            assert!(
                err.starts_with(&format!("--server {bad}: not the URL")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn certificate_authority_replaces_the_ca_and_the_insecure_setting() {
        let fixture = Fixture::new();
        let config = config_of(&ConnectOptions {
            certificate_authority: Some(fixture.path("ca.pem")),
            ..fixture.options()
        })
        .unwrap();
        assert_eq!(config.root_cert, Some(vec![vec![0, 0, 0]]));
        assert!(!config.accept_invalid_certs, "c1 says insecure; the CA file wins");
    }

    #[test]
    fn an_unusable_certificate_authority_is_named() {
        let fixture = Fixture::new();
        for (file, why) in [
            ("missing.pem", "cannot be read: no such file"),
            ("not-pem.txt", "holds no PEM certificate"),
            ("", "cannot be read: it is a directory"),
        ] {
            let path = fixture.path(file);
            let err = error_of(&ConnectOptions {
                certificate_authority: Some(path.clone()),
                ..fixture.options()
            });
            assert!(
                err.starts_with(&format!("--certificate-authority {}: {why}", path.display())),
                "{err}"
            );
        }
    }

    #[test]
    fn insecure_skips_verification_only_when_asked_and_never_with_a_ca() {
        let fixture = Fixture::new();
        let bob_on_c2 = ConnectOptions {
            cluster: Some("c2".into()),
            ..fixture.options()
        };
        assert!(!config_of(&bob_on_c2).unwrap().accept_invalid_certs);
        let config = config_of(&ConnectOptions {
            insecure_skip_tls_verify: true,
            ..bob_on_c2.clone()
        })
        .unwrap();
        assert!(config.accept_invalid_certs);
        assert_eq!(config.root_cert, None);
        let err = error_of(&ConnectOptions {
            insecure_skip_tls_verify: true,
            certificate_authority: Some(fixture.path("ca.pem")),
            ..bob_on_c2
        });
        assert!(
            err.contains("--insecure-skip-tls-verify with --certificate-authority")
                && err.contains("give one of them"),
            "{err}"
        );
    }

    #[test]
    fn tls_server_name_is_the_name_verified() {
        let fixture = Fixture::new();
        let config = config_of(&ConnectOptions {
            tls_server_name: Some("api.internal".into()),
            ..fixture.options()
        })
        .unwrap();
        assert_eq!(config.tls_server_name.as_deref(), Some("api.internal"));
    }

    #[test]
    fn token_replaces_the_users_credentials() {
        let fixture = Fixture::new();
        let config = config_of(&ConnectOptions {
            token: Some("t0k3n".into()),
            ..fixture.options()
        })
        .unwrap();
        assert!(config.auth_info.token.is_some());
        assert_eq!(config.auth_info.username, None);
        assert!(config.auth_info.password.is_none());
        assert_eq!(
            config.auth_info.impersonate.as_deref(),
            Some("someone"),
            "impersonation is not a credential"
        );
        let err = error_of(&ConnectOptions {
            token: Some(" ".into()),
            ..fixture.options()
        });
        assert_eq!(err, "--token: must not be empty");
    }

    #[test]
    fn as_and_as_group_replace_the_entrys_impersonation() {
        let fixture = Fixture::new();
        let config = config_of(&ConnectOptions {
            impersonate: Some("jane".into()),
            impersonate_groups: vec!["ops".into(), "break-glass".into()],
            ..fixture.options()
        })
        .unwrap();
        assert_eq!(config.auth_info.impersonate.as_deref(), Some("jane"));
        assert_eq!(
            config.auth_info.impersonate_groups,
            Some(vec!["ops".to_string(), "break-glass".to_string()])
        );
        let config = config_of(&ConnectOptions {
            impersonate: Some("jane".into()),
            ..fixture.options()
        })
        .unwrap();
        assert_eq!(
            config.auth_info.impersonate_groups, None,
            "the entry's as-groups are not kept"
        );
    }

    #[test]
    fn the_acting_identity_is_the_flags_or_else_the_kubeconfigs_impersonation() {
        let fixture = Fixture::new();
        let acting = |opts: &ConnectOptions| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(acting_as(opts))
        };
        // alice's entry says `as: someone`, `as-groups: [old-group]`.
        let from_entry = Impersonation {
            user: "someone".into(),
            groups: vec!["old-group".into()],
        };
        assert_eq!(acting(&fixture.options()), Some(from_entry));
        let jane = ConnectOptions {
            impersonate: Some("jane".into()),
            ..fixture.options()
        };
        assert_eq!(
            acting(&jane),
            Some(Impersonation {
                user: "jane".into(),
                groups: vec![],
            })
        );
        let bob = ConnectOptions {
            user: Some("bob".into()),
            ..fixture.options()
        };
        assert_eq!(acting(&bob), None, "bob's entry impersonates nobody");
    }

    #[test]
    fn as_group_needs_as() {
        let fixture = Fixture::new();
        let err = error_of(&ConnectOptions {
            impersonate_groups: vec!["ops".into()],
            ..fixture.options()
        });
        assert_eq!(
            err,
            "--as-group ops: impersonating groups needs a user to impersonate: add --as USER"
        );
    }

    #[test]
    fn request_timeout_bounds_each_request() {
        let fixture = Fixture::new();
        let config = config_of(&ConnectOptions {
            request_timeout: Some(Duration::from_secs(5)),
            ..fixture.options()
        })
        .unwrap();
        assert_eq!(config.read_timeout, Some(Duration::from_secs(5)));
        assert!(config.reset_reader_on_write);
        assert_eq!(config.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(config.write_timeout, Some(Duration::from_secs(5)));
        let long = config_of(&ConnectOptions {
            request_timeout: Some(Duration::from_secs(3600)),
            ..fixture.options()
        })
        .unwrap();
        assert_eq!(long.read_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(
            long.connect_timeout,
            Some(Duration::from_secs(30)),
            "kube-rs's default stays"
        );
    }

    #[test]
    fn impersonation_is_named_as_kubectl_flags() {
        let who = Impersonation {
            user: "system:serviceaccount:ops:bot".into(),
            groups: vec!["break glass".into()],
        };
        assert_eq!(
            who.to_string(),
            "user system:serviceaccount:ops:bot in group break glass"
        );
        assert_eq!(
            who.flags(),
            " --as system:serviceaccount:ops:bot --as-group 'break glass'"
        );
    }

    /// A one-shot HTTP server on 127.0.0.1 that answers every request with `body` and hands
    /// back the head of each request it got.
    fn recording_server(body: &'static str) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (heads, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = n.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut request_body = vec![0; length];
                let _ = reader.read_exact(&mut request_body);
                let _ = heads.send(head);
                let _ = write!(
                    stream,
                    "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, received)
    }

    #[test]
    fn requests_carry_the_token_and_the_impersonation_headers() {
        let (url, heads) = recording_server(
            r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{},"status":{"allowed":false}}"#,
        );
        let fixture = Fixture::new();
        let opts = ConnectOptions {
            server: Some(url),
            token: Some("t0k3n".into()),
            impersonate: Some("jane".into()),
            impersonate_groups: vec!["ops".into(), "break-glass".into()],
            request_timeout: Some(Duration::from_secs(10)),
            ..fixture.options()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let missing = runtime.block_on(async {
            let connection = connect(&opts).await.unwrap();
            let needed = crate::access::edit_node();
            crate::access::check(&connection.client, &needed[..1]).await
        });
        assert_eq!(missing.unwrap_err().0.len(), 1, "the server said no");
        let head = heads
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            head.starts_with("post /apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
            "{head}"
        );
        assert!(head.contains("\r\nauthorization: bearer t0k3n\r\n"), "{head}");
        assert!(head.contains("\r\nimpersonate-user: jane\r\n"), "{head}");
        assert!(
            head.contains("\r\nimpersonate-group: ops\r\n")
                && head.contains("\r\nimpersonate-group: break-glass\r\n"),
            "{head}"
        );
    }
}
