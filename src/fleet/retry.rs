//! Which API errors deserve another try (refused or reset connections, timeouts, 429, 5xx) and the
//! jittered exponential backoff between tries, bounded by the caller's deadline.

use std::time::{Duration, Instant, SystemTime};

use crate::checks::cluster::connect::{ApiFailure, Layer};

/// The first pause between tries; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// What to do after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A transient failure: try again, after at least this long when the server said so
    /// (a 429's `retryAfterSeconds`).
    Retry(Option<Duration>),
    /// Trying again would give the same answer (403, 404, 422, TLS, credentials, 410 Gone...).
    Final,
}

/// Sorts a kube error into transient or final.
pub fn classify(e: &kube::Error) -> Next {
    if let kube::Error::Api(s) = e {
        return match s.code {
            429 => Next::Retry(
                s.details
                    .as_ref()
                    .map(|d| d.retry_after_seconds)
                    .filter(|&s| s > 0)
                    .map(|s| Duration::from_secs(s.into())),
            ),
            500 | 502 | 503 | 504 => Next::Retry(None),
            _ => Next::Final,
        };
    }
    if connection_dropped(e) {
        return Next::Retry(None);
    }
    match ApiFailure::classify("", e, Duration::ZERO).layer {
        Layer::TcpRefused | Layer::Timeout | Layer::NameResolution | Layer::Other => {
            Next::Retry(None)
        }
        Layer::Tls | Layer::Unauthorized | Layer::Forbidden | Layer::Config => Next::Final,
    }
}

/// A connection the server or a load balancer dropped under a request: an EOF without TLS
/// close_notify, a reset, a broken pipe, or hyper's pooled connection found closed. The TLS layer's
/// words are in such an error ("peer closed connection without sending TLS close_notify"), but the
/// next request on a new connection is likely to work: transient, not a certificate problem.
fn connection_dropped(e: &kube::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
            )
        {
            return true;
        }
        if err
            .to_string()
            .contains("connection closed before message completed")
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The pause before try number `attempt` (0-based): 200 ms doubling to 5 s, each drawn between
/// half and all of that (many pods retrying at once must not hit the API server in step), never
/// shorter than the server's own Retry-After.
pub fn pause(attempt: u32, server_says: Option<Duration>) -> Duration {
    let ceiling = FIRST_PAUSE
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_PAUSE);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos() as u64
        ^ u64::from(std::process::id()).rotate_left(17);
    let half = ceiling / 2;
    let jitter = Duration::from_nanos(nanos % (half.as_nanos() as u64).max(1));
    (half + jitter).max(server_says.unwrap_or_default())
}

/// Runs `f` until it succeeds, fails for good, or the next try would start after `deadline`;
/// returns the last error then. `attempts` counts the tries made.
pub async fn until<T, F, Fut>(deadline: Instant, mut f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        let e = match f().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Next::Retry(after) = classify(&e) else {
            return Err(e);
        };
        let wait = pause(attempt, after);
        if Instant::now() + wait >= deadline {
            return Err(e);
        }
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::{Status, response::StatusDetails};

    fn api(code: u16, retry_after: u32) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            details: (retry_after > 0).then(|| {
                serde_json::from_value::<StatusDetails>(
                    serde_json::json!({"retryAfterSeconds": retry_after}),
                )
                .unwrap()
            }),
            ..Status::failure("m", "r")
        }))
    }

    #[test]
    fn transient_errors_are_retried_and_final_ones_are_not() {
        assert_eq!(
            classify(&api(429, 3)),
            Next::Retry(Some(Duration::from_secs(3)))
        );
        assert_eq!(classify(&api(429, 0)), Next::Retry(None));
        for c in [500, 502, 503, 504] {
            assert_eq!(classify(&api(c, 0)), Next::Retry(None), "{c}");
        }
        for c in [400, 401, 403, 404, 409, 410, 422] {
            assert_eq!(classify(&api(c, 0)), Next::Final, "{c}");
        }
        let refused = kube::Error::Service(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(classify(&refused), Next::Retry(None));
        let reset =
            kube::Error::ReadEvents(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&reset), Next::Retry(None));
        let tls = kube::Error::Service(Box::new(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired,
        )));
        assert_eq!(classify(&tls), Next::Final);
        // A kept-alive connection the server closed without TLS close_notify: its words name TLS,
        // but a new connection is the cure.
        let eof = kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify",
        )));
        assert_eq!(classify(&eof), Next::Retry(None));
    }

    #[test]
    fn the_pause_doubles_to_a_ceiling_with_jitter_and_honours_retry_after() {
        for attempt in 0..20 {
            let ceiling = FIRST_PAUSE
                .saturating_mul(1 << attempt.min(16))
                .min(MAX_PAUSE);
            let p = pause(attempt, None);
            assert!(p >= ceiling / 2 && p <= ceiling, "{attempt}: {p:?}");
        }
        assert!(pause(0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
    }

    #[test]
    fn until_stops_at_a_final_error_and_at_the_deadline() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut tries = 0;
        let r: Result<(), _> = rt.block_on(until(Instant::now() + Duration::from_secs(30), || {
            tries += 1;
            async { Err(api(403, 0)) }
        }));
        assert!(r.is_err());
        assert_eq!(tries, 1, "a 403 is not retried");
        let mut tries = 0;
        let r = rt.block_on(until(Instant::now() + Duration::from_secs(30), || {
            tries += 1;
            let n = tries;
            async move { if n < 3 { Err(api(503, 0)) } else { Ok(n) } }
        }));
        assert_eq!(r.unwrap(), 3, "503 twice, then served");
        let t = Instant::now();
        let r: Result<(), _> = rt
            .block_on(until(Instant::now() + Duration::from_secs(1), || async {
                Err(api(503, 0))
            }));
        assert!(r.is_err() && t.elapsed() < Duration::from_secs(2));
    }
}
