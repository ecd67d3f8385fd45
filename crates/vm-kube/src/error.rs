//! Errors of cluster I/O, worded for an operator: what failed, on which object, what to do.

use std::fmt;

/// An API call that failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The user lacks a permission (HTTP 403).
    #[error("forbidden: cannot {verb} {resource}{scope}: {message}")]
    Forbidden {
        /// The verb, e.g. `list`.
        verb: &'static str,
        /// `plural.group`, e.g. `virtualmachines.kubevirt.io`.
        resource: String,
        /// ` in namespace X`, ` at cluster scope`.
        scope: Scope,
        /// The API server's words.
        message: String,
    },
    /// The API server rejected the credentials (HTTP 401): a wrong or expired token or
    /// certificate.
    #[error(
        "the API server rejected the credentials (HTTP 401 Unauthorized) when trying to {verb} {resource}"
    )]
    Unauthorized {
        /// The verb.
        verb: &'static str,
        /// `plural.group`.
        resource: String,
    },
    /// The API server does not serve the resource (HTTP 404 on a list).
    #[error("the cluster does not serve {resource} ({api_version}){hint}")]
    NotServed {
        /// `plural.group`.
        resource: String,
        /// `group/version`.
        api_version: String,
        /// Why it might be missing.
        hint: &'static str,
    },
    /// The API server answered with another error.
    #[error("{verb} {resource}{scope}: {message} (HTTP {code})")]
    Status {
        /// The verb.
        verb: &'static str,
        /// `plural.group`.
        resource: String,
        /// Namespace or cluster scope.
        scope: Scope,
        /// The API server's words.
        message: String,
        /// HTTP status code.
        code: u16,
    },
    /// The API server could not be reached or the connection failed.
    #[error("cannot reach the API server to {verb} {resource}: {message}")]
    Unreachable {
        /// The verb.
        verb: &'static str,
        /// `plural.group`.
        resource: String,
        /// The transport's words, causes joined.
        message: String,
    },
}

/// Where a call looked.
#[derive(Debug, Clone)]
pub enum Scope {
    /// One namespace.
    Namespace(String),
    /// All namespaces, or a cluster-scoped resource.
    Cluster,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Namespace(ns) => write!(f, " in namespace {ns}"),
            Self::Cluster => write!(f, " at cluster scope"),
        }
    }
}

impl ApiError {
    /// Classifies a kube error from `verb` on `resource` in `scope`.
    #[must_use]
    pub fn from_kube(err: kube::Error, verb: &'static str, resource: &str, scope: Scope) -> Self {
        match err {
            kube::Error::Api(status) if status.code == 403 => Self::Forbidden {
                verb,
                resource: resource.to_string(),
                scope,
                message: status.message.clone(),
            },
            kube::Error::Api(status) if status.code == 401 => Self::Unauthorized {
                verb,
                resource: resource.to_string(),
            },
            kube::Error::Api(status) => Self::Status {
                verb,
                resource: resource.to_string(),
                scope,
                message: status.message.clone(),
                code: status.code,
            },
            other => Self::Unreachable {
                verb,
                resource: resource.to_string(),
                message: chain(&other),
            },
        }
    }

    /// A `kubectl auth can-i` line that checks the missing permission, for a hint.
    #[must_use]
    pub fn can_i_hint(&self) -> Option<String> {
        match self {
            Self::Forbidden {
                verb,
                resource,
                scope,
                ..
            } => {
                let ns = match scope {
                    Scope::Namespace(ns) => format!(" -n {ns}"),
                    Scope::Cluster => " --all-namespaces".to_string(),
                };
                Some(format!("kubectl auth can-i {verb} {resource}{ns}"))
            }
            _ => None,
        }
    }
}

/// An error and its causes on one line, each cause once.
#[must_use]
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}
