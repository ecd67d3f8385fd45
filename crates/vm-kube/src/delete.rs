//! Deletion that is idempotent: every step of a drain or a recovery may be re-run, so an object
//! that is already gone counts as deleted.

use std::fmt::Debug;

use kube::Api;
use kube::api::DeleteParams;
use serde::de::DeserializeOwned;

/// Deletes `name`; `Ok(true)` when this call deleted it, `Ok(false)` when it was already gone
/// (404). Other errors are the caller's to word.
///
/// # Errors
/// The API error, when it is not a 404.
pub async fn delete_if_present<K>(
    api: &Api<K>,
    name: &str,
    params: &DeleteParams,
) -> Result<bool, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}
