//! What a connection is asked for (kubectl's connection flags), whose rights it uses
//! (impersonation), and why none could be built.

use std::path::PathBuf;
use std::time::Duration;

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
