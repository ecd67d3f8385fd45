//! Retries of API calls that failed for a passing reason: the API server restarting (connection
//! refused or reset), overloaded (429) or failing (5xx). A drain or a recovery must ride out a
//! control-plane restart rather than stop half-way.
//!
//! Only calls that may safely run twice go through [`transient`]: reads, merge patches,
//! deletions, evictions. Creating an object with `generateName` is not one of them: after a
//! failure whose outcome is unknown the object may exist, so the caller looks for it before
//! creating again (see the drain's migrations).

use std::future::Future;
use std::time::{Duration, Instant};

/// How long one call is retried before its error is returned.
pub const PATIENCE: Duration = Duration::from_secs(120);
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// Whether `e` is worth retrying: no answer from the API server, or an answer that says "not
/// now" (429 Too Many Requests, 500, 502, 503, 504).
#[must_use]
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// Whether `e` is transient for an eviction: as [`is_transient`], except 429, which on the
/// eviction subresource is an answer (a PodDisruptionBudget or KubeVirt's webhook refusing for
/// now) that the caller reports and retries itself.
#[must_use]
pub fn is_transient_for_eviction(e: &kube::Error) -> bool {
    !matches!(e, kube::Error::Api(s) if s.code == 429) && is_transient(e)
}

/// The pauses between tries: 250 ms doubling up to 5 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST_PAUSE }
    }
}

impl Backoff {
    /// The next pause.
    pub fn pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(LONGEST_PAUSE);
        pause
    }
}

/// The same pauses for kube-runtime's watcher (`.backoff(Backoff::default())`): a watch resumes
/// within 5 s of the API server's return, where client-go's default waits up to 30 s.
impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.pause())
    }
}

impl kube::runtime::utils::Backoff for Backoff {
    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Runs `call` until it succeeds, fails for good, or has failed transiently for [`PATIENCE`];
/// `what` names the call in the warnings printed while it is retried.
///
/// # Errors
/// The call's error when it is not transient or patience ran out.
pub async fn transient<T, F, Fut>(what: &str, call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    retry_while(what, is_transient, call).await
}

/// [`transient`] with the caller's idea of what is transient.
///
/// # Errors
/// The call's error when `retry_on` rejects it or patience ran out.
pub async fn retry_while<T, F, Fut>(
    what: &str,
    retry_on: impl Fn(&kube::Error) -> bool,
    mut call: F,
) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let started = Instant::now();
    let mut backoff = Backoff::default();
    let mut failures = 0u32;
    loop {
        match call().await {
            Ok(v) => {
                if failures > 0 {
                    tracing::warn!("{what}: the API server answers again (after {failures} failed tries)");
                }
                return Ok(v);
            }
            Err(e) if retry_on(&e) && started.elapsed() < PATIENCE => {
                failures += 1;
                let pause = backoff.pause();
                let text = crate::error::chain(&e);
                if failures == 1 {
                    tracing::warn!("{what}: {text}; retrying for up to {} s", PATIENCE.as_secs());
                } else {
                    tracing::info!("{what}: {text}; try {failures}, next in {pause:?}");
                }
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("test", "Test").with_code(code),
        ))
    }

    #[test]
    fn unavailable_and_overloaded_are_transient_refusals_are_not() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_transient(&status(code)), "{code}");
        }
        for code in [400, 403, 404, 409, 422] {
            assert!(!is_transient(&status(code)), "{code}");
        }
        assert!(!is_transient_for_eviction(&status(429)));
        assert!(is_transient_for_eviction(&status(503)));
    }

    #[test]
    fn the_pause_doubles_up_to_five_seconds() {
        let mut b = Backoff::default();
        let pauses: Vec<u128> = (0..7).map(|_| b.pause().as_millis()).collect();
        assert_eq!(pauses, [250, 500, 1000, 2000, 4000, 5000, 5000]);
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_and_a_refusal_is_returned_at_once() {
        let mut calls = 0;
        let r: Result<u32, _> = transient("test call", || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(status(503)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        let mut calls = 0;
        let r: Result<u32, _> = transient("test call", || {
            calls += 1;
            async { Err(status(404)) }
        })
        .await;
        assert!(matches!(r, Err(kube::Error::Api(s)) if s.code == 404));
        assert_eq!(calls, 1);
    }
}
