//! Watch-backed caches shared by the simulated components.

use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;

/// A cache of `api`'s objects kept by a watch (spawned on the current runtime); `notify` is
/// woken on every event.
pub(crate) fn store<K>(api: Api<K>, cfg: watcher::Config, notify: Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    tokio::spawn(
        reflector::reflector(writer, watcher(api, cfg))
            .default_backoff()
            .for_each(move |_| {
                notify.notify_one();
                async {}
            }),
    );
    store
}
