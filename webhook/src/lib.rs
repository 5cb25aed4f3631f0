//! Delivery rules for Slack incoming webhooks, shared by the edgealert agent and Lambda.
//!
//! Both tiers post the same messages under the same rules, so a webhook gets the same
//! behaviour whichever of them sends:
//!
//! - [`post`] sends one request and sorts the response into an [`Attempt`]: delivered,
//!   rate-limited with the `Retry-After` wait, retryable (5xx, 408, timeouts and connection
//!   errors) or permanent (any other status, which a retry cannot fix).
//! - [`RateLimiter`] is a token bucket per webhook. Slack accepts about one message per
//!   second per webhook, with short bursts.
//! - [`Jitter`] gives the wait before a retry: exponential backoff with full jitter.
//!
//! Errors never contain the webhook URL, because the URL is the secret.

use std::time::Duration;

/// Outcome of one request to a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The webhook accepted the message (HTTP 2xx).
    Delivered,
    /// HTTP 429: send again after this wait, taken from `Retry-After` (1 s when absent),
    /// capped by the caller's maximum and at least 1 s.
    RetryAfter(Duration),
    /// A failure that a later attempt may not have: HTTP 5xx, 408, a timeout or a
    /// connection error. The string describes it without the URL.
    Retry(String),
    /// A failure that a retry cannot fix, such as HTTP 400 `invalid_payload` or 404
    /// `no_service`. The string describes it without the URL.
    Permanent(String),
}

/// Maximum length of the response body excerpt copied into an error, in characters.
const BODY_EXCERPT_CHARS: usize = 200;

/// Sends `request` (a POST of the message to the webhook URL) and classifies the result.
///
/// `max_retry_after_seconds` caps the wait of a 429 response, so a misbehaving server
/// cannot park a sender for hours.
pub async fn post(request: reqwest::RequestBuilder, max_retry_after_seconds: u64) -> Attempt {
    let response = match request.send().await {
        Ok(response) => response,
        // `without_url` keeps the secret out of the message.
        Err(error) => return Attempt::Retry(error.without_url().to_string()),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if status.is_success() {
        return Attempt::Delivered;
    }
    let body = read_excerpt(response).await;
    classify(status.as_u16(), retry_after, &body, max_retry_after_seconds)
}

/// Maximum bytes of an error response's body that [`post`] reads: enough for the excerpt,
/// and little enough that a server responding with gigabytes cannot exhaust memory.
const BODY_READ_BYTES: usize = 4096;

/// Reads up to [`BODY_READ_BYTES`] of the body, as text with invalid UTF-8 replaced.
async fn read_excerpt(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < BODY_READ_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(BODY_READ_BYTES);
    String::from_utf8_lossy(&body).into_owned()
}

/// Classifies a webhook response by its status code, `Retry-After` value in seconds and
/// body.
pub fn classify(
    status: u16,
    retry_after: Option<u64>,
    body: &str,
    max_retry_after_seconds: u64,
) -> Attempt {
    if (200..300).contains(&status) {
        return Attempt::Delivered;
    }
    if status == 429 {
        let seconds = retry_after.unwrap_or(1).min(max_retry_after_seconds);
        return Attempt::RetryAfter(Duration::from_secs(seconds.max(1)));
    }
    let excerpt: String = body.chars().take(BODY_EXCERPT_CHARS).collect();
    let error = format!("HTTP {status}: {}", excerpt.trim());
    if (500..600).contains(&status) || status == 408 {
        Attempt::Retry(error)
    } else {
        Attempt::Permanent(error)
    }
}

/// Token bucket: `burst` messages back to back, then one per `interval`, and nothing
/// before the end of a `Retry-After` wait set with [`RateLimiter::hold_until`].
#[derive(Debug)]
pub struct RateLimiter {
    capacity: f64,
    tokens: f64,
    interval: Duration,
    last: tokio::time::Instant,
    hold_until: Option<tokio::time::Instant>,
}

impl RateLimiter {
    /// Creates a full bucket. A `burst` of 0 is raised to 1.
    pub fn new(burst: u32, interval: Duration) -> RateLimiter {
        let capacity = f64::from(burst.max(1));
        RateLimiter {
            capacity,
            tokens: capacity,
            interval,
            last: tokio::time::Instant::now(),
            hold_until: None,
        }
    }

    /// Holds every message until `until`, as a `Retry-After` response requests. A later
    /// hold replaces an earlier one only when it ends later.
    pub fn hold_until(&mut self, until: tokio::time::Instant) {
        if self.hold_until.is_none_or(|current| current < until) {
            self.hold_until = Some(until);
        }
    }

    /// Returns how long [`RateLimiter::acquire`] would wait now; zero when a token is
    /// available.
    pub fn delay(&mut self) -> Duration {
        self.refill();
        let held = self.hold_until.map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(tokio::time::Instant::now())
        });
        if self.tokens >= 1.0 {
            return held;
        }
        held.max(Duration::from_secs_f64(
            (1.0 - self.tokens) * self.interval.as_secs_f64(),
        ))
    }

    /// Waits until a token is available and takes it.
    pub async fn acquire(&mut self) {
        loop {
            let wait = self.delay();
            if wait.is_zero() {
                self.tokens -= 1.0;
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn refill(&mut self) {
        let now = tokio::time::Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        let refill = elapsed / self.interval.as_secs_f64().max(1e-6);
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.last = now;
    }
}

/// Exponential backoff with full jitter: a uniform wait in `[0, min(60 s, 0.5 s × 2^n))`
/// after the `n`-th failure, from a xorshift generator.
#[derive(Debug)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeds the generator from the clock.
    pub fn seeded() -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|duration| duration.subsec_nanos())
            .unwrap_or(1);
        Jitter(u64::from(nanos) | 1)
    }

    /// Returns the wait before the next attempt after `failures` failed ones.
    pub fn backoff(&mut self, failures: u32) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let ceiling_ms = (500u64 << failures.min(7)).min(60_000);
        Duration::from_millis(self.0 % ceiling_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_sorts_statuses() {
        assert_eq!(classify(200, None, "ok", 300), Attempt::Delivered);
        assert_eq!(
            classify(429, Some(7), "rate_limited", 300),
            Attempt::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(
            classify(429, None, "", 300),
            Attempt::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            classify(429, Some(3600), "", 300),
            Attempt::RetryAfter(Duration::from_secs(300))
        );
        assert_eq!(
            classify(429, Some(0), "", 300),
            Attempt::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            classify(503, None, " busy ", 300),
            Attempt::Retry("HTTP 503: busy".into())
        );
        assert_eq!(
            classify(408, None, "", 300),
            Attempt::Retry("HTTP 408: ".into())
        );
        assert_eq!(
            classify(400, None, "invalid_payload", 300),
            Attempt::Permanent("HTTP 400: invalid_payload".into())
        );
        assert_eq!(
            classify(404, None, "no_service", 300),
            Attempt::Permanent("HTTP 404: no_service".into())
        );
    }

    #[test]
    fn classify_cuts_long_bodies() {
        let body = "x".repeat(1000);
        let Attempt::Permanent(error) = classify(400, None, &body, 300) else {
            panic!("expected a permanent error");
        };
        assert_eq!(error.len(), "HTTP 400: ".len() + BODY_EXCERPT_CHARS);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_allows_burst_then_interval() {
        let mut limiter = RateLimiter::new(3, Duration::from_secs(1));
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(limiter.delay(), Duration::from_secs(1));
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(limiter.delay(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_holds_until_retry_after_ends() {
        let mut limiter = RateLimiter::new(3, Duration::from_secs(1));
        let start = tokio::time::Instant::now();
        limiter.hold_until(start + Duration::from_secs(30));
        limiter.hold_until(start + Duration::from_secs(5));

        assert_eq!(limiter.delay(), Duration::from_secs(30));
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        assert_eq!(limiter.delay(), Duration::ZERO);
    }

    /// Responds to one request with `status` and a chunked body that never ends.
    async fn endless_body_server(status: u16) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
            );
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("{:x}\r\n{}\r\n", 65536, "e".repeat(65536));
            while stream.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        format!("http://{address}/services/T0/B0/X")
    }

    #[tokio::test]
    async fn post_reads_excerpt_of_endless_body() {
        let url = endless_body_server(500).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();

        let attempt = post(client.post(&url).body("{}"), 60).await;

        let Attempt::Retry(error) = attempt else {
            panic!("expected a retryable error, got {attempt:?}");
        };
        assert_eq!(
            error,
            format!("HTTP 500: {}", "e".repeat(BODY_EXCERPT_CHARS))
        );
    }

    #[tokio::test]
    async fn post_skips_body_of_success() {
        let url = endless_body_server(200).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();

        assert_eq!(
            post(client.post(&url).body("{}"), 60).await,
            Attempt::Delivered
        );
    }

    #[test]
    fn jitter_stays_below_the_ceiling() {
        let mut jitter = Jitter::seeded();
        for failures in 0..20 {
            let ceiling = Duration::from_millis((500u64 << failures.min(7)).min(60_000));
            assert!(jitter.backoff(failures) < ceiling);
        }
    }
}
