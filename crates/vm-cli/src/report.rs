//! Printing errors: the whole cause chain once, then `hint:` lines saying what to do.

use std::io::Write;

/// An error for the user, with optional hints.
#[derive(Debug)]
pub struct UserError {
    /// What failed, with its causes.
    pub message: String,
    /// What to try.
    pub hints: Vec<String>,
}

impl UserError {
    /// An error from a message.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hints: Vec::new(),
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// Writes `error: …` and each `hint: …` to stderr.
    pub fn print(&self, program: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{program}: error: {}", self.message);
        for hint in &self.hints {
            let _ = writeln!(err, "hint: {hint}");
        }
    }
}

impl<E: std::error::Error> From<E> for UserError {
    fn from(err: E) -> Self {
        let mut parts = vec![err.to_string()];
        let mut source = err.source();
        while let Some(e) = source {
            let text = e.to_string();
            if !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
            source = e.source();
        }
        Self::new(parts.join(": "))
    }
}

/// A failed API call for the user; a 403 gets the `kubectl auth can-i` line that checks the
/// missing permission, an unreachable server a hint about the kubeconfig, rejected
/// credentials (401) one about logging in again, and a name that is not found (404) the
/// command that lists what exists.
#[must_use]
pub fn api_error(err: vm_kube::error::ApiError) -> UserError {
    let can_i = err.can_i_hint();
    let unreachable = matches!(err, vm_kube::error::ApiError::Unreachable { .. });
    let unauthorized = matches!(err, vm_kube::error::ApiError::Unauthorized { .. });
    let not_found = match &err {
        vm_kube::error::ApiError::Status {
            code: 404, resource, ..
        } => Some(resource.split('.').next().unwrap_or(resource).to_string()),
        _ => None,
    };
    let mut user = UserError::from(err);
    if let Some(line) = can_i {
        user = user.hint(format!(
            "check the permission with `{line}`; the roles are in deploy/rbac/"
        ));
    }
    if unreachable && user.message.contains("certificate") {
        user = user.hint(
            "the API server's certificate is not trusted: check the kubeconfig's certificate-authority, or pass --certificate-authority FILE",
        );
    } else if unreachable {
        user = user.hint("check that the cluster is up and that --kubeconfig/--context select it");
    }
    if let Some(resource) = not_found {
        user = user.hint(format!(
            "check the name: `kubectl get {resource}` lists what exists"
        ));
    }
    if unauthorized {
        user = user.hint(
            "the token or client certificate of the kubeconfig's user is wrong or has expired: log in again (renew the credentials) and retry",
        );
    }
    user
}
