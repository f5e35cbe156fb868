//! Rate limits (contract §8.5): requests per token, and failed authentications per client
//! address.
//!
//! Requests per token go through `governor`'s GCRA, keyed by the token's digest. Failed
//! authentications are counted by a small GCRA of our own, because an address over its limit
//! must be refused *before* its token is checked, which needs a look at the state without
//! spending a cell (governor has no such call).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use visitor_store::TokenDigest;

use crate::access::shared::{address_key, token_key, Gcra, SharedCounter, Verdict};

pub static X_RATE_LIMIT: HeaderName = HeaderName::from_static("x-rate-limit");
pub static X_RATE_LIMIT_REMAINING: HeaderName = HeaderName::from_static("x-rate-limit-remaining");
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The window a rate counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Second,
    Minute,
}

impl Window {
    fn length(self) -> Duration {
        match self {
            Self::Second => Duration::from_secs(1),
            Self::Minute => Duration::from_secs(60),
        }
    }
}

/// A rate: `count` requests per window, any of them at once (the burst is the whole count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub window: Window,
}

impl Rate {
    /// Time between two cells, when the bucket refills evenly.
    fn interval(self) -> Duration {
        self.window.length() / self.count.get()
    }

    fn quota(self) -> Quota {
        match self.window {
            Window::Second => Quota::per_second(self.count),
            Window::Minute => Quota::per_minute(self.count),
        }
    }
}

/// A limit setting: `N/s`, `N/min`, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSetting {
    Off,
    Limit(Rate),
}

impl FromStr for RateSetting {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        let wrong = || format!("{value:?} is not a rate: expected N/s, N/min or off (N ≥ 1)");
        let (count, window) = value.split_once('/').ok_or_else(wrong)?;
        let window = match window {
            "s" => Window::Second,
            "min" => Window::Minute,
            _ => return Err(wrong()),
        };
        if !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(wrong());
        }
        let count: NonZeroU32 = count.parse().map_err(|_| wrong())?;
        Ok(Self::Limit(Rate { count, window }))
    }
}

impl fmt::Display for RateSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Limit(Rate { count, window }) => {
                let unit = match window {
                    Window::Second => "s",
                    Window::Minute => "min",
                };
                write!(f, "{count}/{unit}")
            }
        }
    }
}

/// Where a token stands against its limit, as told in every answer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Requests allowed per window.
    pub limit: u32,
    /// Requests that may still be sent at once.
    pub remaining: u32,
    /// Seconds until the whole limit is available again.
    pub reset: u64,
    /// The window, in seconds.
    pub window: u64,
}

impl Allowance {
    fn of(rate: Rate, remaining: u32) -> Self {
        let spent = rate.count.get().saturating_sub(remaining);
        Self {
            limit: rate.count.get(),
            remaining,
            reset: whole_seconds(rate.interval() * spent),
            window: rate.window.length().as_secs(),
        }
    }

    /// Sets what changes from answer to answer: Zendesk's `X-Rate-Limit-Remaining` and the
    /// IETF draft's `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10).
    fn write_state_to(&self, headers: &mut HeaderMap) {
        headers.insert(
            X_RATE_LIMIT_REMAINING.clone(),
            HeaderValue::from(self.remaining),
        );
        if let Ok(value) = draft_item(("r=", self.remaining.into()), (";t=", self.reset)) {
            headers.insert(RATELIMIT.clone(), value);
        }
    }
}

/// An item of the draft's headers: `"token";<a><x><b><y>`.
fn draft_item(
    (a, x): (&str, u64),
    (b, y): (&str, u64),
) -> Result<HeaderValue, header::InvalidHeaderValue> {
    let mut value = String::with_capacity(48);
    for part in [
        "\"token\";",
        a,
        itoa::Buffer::new().format(x),
        b,
        itoa::Buffer::new().format(y),
    ] {
        value.push_str(part);
    }
    HeaderValue::try_from(value)
}

/// Seconds, rounded up: a client that waits this long is not early.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// A refusal: the allowance (nothing remaining) and the whole seconds to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub allowance: Option<Allowance>,
    pub retry_after: u64,
}

type Keyed = RateLimiter<
    TokenDigest,
    DefaultKeyedStateStore<TokenDigest, BuildHasherDefault<DigestHasher>>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// Hashes a token digest by folding its words together. A SHA-256 digest is already uniform,
/// and only digests of known tokens reach the limiter, so no one can choose keys that collide:
/// a keyed hash (SipHash, the default) would cost more than the rest of the check.
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        for word in bytes.chunks(8) {
            let mut buffer = [0; 8];
            buffer[..word.len()].copy_from_slice(word);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(buffer);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Requests per token.
pub struct TokenLimiter {
    rate: Rate,
    limiter: Keyed,
    /// `X-Rate-Limit` and `RateLimit-Policy`: the same in every answer, so made once.
    fixed: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for TokenLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenLimiter")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl TokenLimiter {
    /// A limiter, or none when the setting is `off`.
    pub fn new(setting: RateSetting) -> Option<Self> {
        match setting {
            RateSetting::Off => None,
            RateSetting::Limit(rate) => {
                let limit = u64::from(rate.count.get());
                let window = rate.window.length().as_secs();
                let mut fixed = vec![(X_RATE_LIMIT.clone(), HeaderValue::from(limit))];
                // Digits and ASCII punctuation: always a valid value.
                if let Ok(policy) = draft_item(("q=", limit), (";w=", window)) {
                    fixed.push((RATELIMIT_POLICY.clone(), policy));
                }
                Some(Self {
                    rate,
                    limiter: RateLimiter::dashmap_with_hasher(
                        rate.quota(),
                        BuildHasherDefault::default(),
                    )
                    .with_middleware::<StateInformationMiddleware>(),
                    fixed,
                })
            }
        }
    }

    /// Spends one request of this token's allowance, or refuses it.
    pub fn check(&self, token: &TokenDigest) -> Result<Allowance, Refusal> {
        match self.limiter.check_key(token) {
            Ok(state) => Ok(Allowance::of(self.rate, state.remaining_burst_capacity())),
            Err(not_until) => Err(Refusal {
                allowance: Some(Allowance::of(self.rate, 0)),
                retry_after: whole_seconds(not_until.wait_time_from(self.limiter.clock().now()))
                    .max(1),
            }),
        }
    }

    /// Sets the allowance headers of an answer: Zendesk's `X-Rate-Limit` /
    /// `X-Rate-Limit-Remaining` and the IETF draft's `RateLimit-Policy` / `RateLimit`.
    pub fn write_headers(&self, allowance: &Allowance, headers: &mut HeaderMap) {
        for (name, value) in &self.fixed {
            headers.insert(name.clone(), value.clone());
        }
        allowance.write_state_to(headers);
    }

    /// This limit as the shared store's script takes it.
    fn gcra(&self) -> Gcra {
        Gcra {
            interval: self.rate.interval(),
            tolerance: self.rate.interval() * (self.rate.count.get() - 1),
        }
    }

    /// Forgets tokens whose allowance is whole again (their state is the default).
    pub fn forget_settled(&self) {
        self.limiter.retain_recent();
    }
}

/// Failed authentications per client address (GCRA: a theoretical arrival time per address).
#[derive(Debug)]
pub struct FailureLimiter {
    interval: Duration,
    tolerance: Duration,
    arrivals: Mutex<HashMap<IpAddr, Instant>>,
    /// How many addresses `arrivals` holds, readable without the lock: while no address has
    /// failed, a request looks at nothing shared but this.
    tracked: AtomicUsize,
}

impl FailureLimiter {
    /// A limiter, or none when the setting is `off`.
    pub fn new(setting: RateSetting) -> Option<Self> {
        match setting {
            RateSetting::Off => None,
            RateSetting::Limit(rate) => Some(Self {
                interval: rate.interval(),
                tolerance: rate.interval() * (rate.count.get() - 1),
                arrivals: Mutex::new(HashMap::new()),
                tracked: AtomicUsize::new(0),
            }),
        }
    }

    fn arrivals(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        // The map holds plain values, valid whatever a panicking holder left.
        self.arrivals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Some(seconds to wait)` when one more failure from `address` would be over the limit.
    pub fn refused(&self, address: IpAddr, now: Instant) -> Option<u64> {
        // A failure being recorded meanwhile is counted as if it came after this request.
        if self.tracked.load(Ordering::Acquire) == 0 {
            return None;
        }
        let tat = *self.arrivals().get(&counted_as(address))?;
        self.wait(tat, now)
    }

    fn wait(&self, tat: Instant, now: Instant) -> Option<u64> {
        let ahead = tat.saturating_duration_since(now);
        (ahead > self.tolerance).then(|| whole_seconds(ahead - self.tolerance).max(1))
    }

    /// Counts a failed authentication from `address`. Returns `Some(seconds to wait)`, counting
    /// nothing, when it is over the limit (another request spent the last one meanwhile).
    pub fn record(&self, address: IpAddr, now: Instant) -> Option<u64> {
        let address = counted_as(address);
        let mut arrivals = self.arrivals();
        let tat = arrivals.get(&address).map_or(now, |&tat| tat.max(now));
        if let Some(wait) = self.wait(tat, now) {
            return Some(wait);
        }
        arrivals.insert(address, tat + self.interval);
        self.tracked.store(arrivals.len(), Ordering::Release);
        None
    }

    /// This limit as the shared store's script takes it.
    fn gcra(&self) -> Gcra {
        Gcra {
            interval: self.interval,
            tolerance: self.tolerance,
        }
    }

    /// Forgets addresses with no failure left to count.
    pub fn forget_settled(&self, now: Instant) {
        let mut arrivals = self.arrivals();
        arrivals.retain(|_, tat| *tat > now);
        self.tracked.store(arrivals.len(), Ordering::Release);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        let tracked = self.arrivals().len();
        assert_eq!(tracked, self.tracked.load(Ordering::Acquire));
        tracked
    }
}

/// The address a failure is counted against: an IPv4 address as it is, an IPv6 address by its
/// /64 (one host, or one customer of a provider, holds a whole /64).
fn counted_as(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// The limits a server applies: counted by this instance alone, or in the shared store with
/// this instance's counters as the fallback.
#[derive(Debug, Default)]
pub struct Limits {
    pub per_token: Option<TokenLimiter>,
    pub auth_failures: Option<FailureLimiter>,
    pub shared: Option<SharedCounter>,
    /// Requests of a token already spent in the shared store for one client address, served
    /// here without asking it again (see [`SLICE_LIFETIME`]).
    slices: Mutex<HashMap<(TokenDigest, IpAddr), Slice>>,
}

/// How long a slice of a token's allowance may be served from. The shared store grants one
/// only to an address with no failed authentication in its window, and a slice is at most a
/// fiftieth of the limit (see [`slice_size`]), so what an instance serves on its own stays
/// within a small share of the limit and a short time.
pub const SLICE_LIFETIME: Duration = Duration::from_millis(100);

/// Requests of a token's allowance, spent in the shared store, left to serve here.
#[derive(Debug, Clone, Copy)]
struct Slice {
    left: u32,
    /// What the shared store said remained after it granted the slice.
    remaining: u32,
    reset: Duration,
    granted: Instant,
}

/// How many requests of a token to take from the shared store at once: a fiftieth of the
/// limit (one for limits under 100 a window), at most 1,000.
fn slice_size(rate: Rate) -> u32 {
    (rate.count.get() / 50).clamp(1, 1000)
}

/// What the limits make of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The client address is over its failed-authentication limit: 429 after this many whole
    /// seconds, whatever the token.
    AddressRefused(u64),
    /// The token was not accepted, and the failure is counted.
    FailureCounted,
    /// A known token, within its limit (`None`: no per-token limit).
    Admitted(Option<Allowance>),
    /// A known token over its limit.
    TokenRefused(Refusal),
}

impl Limits {
    pub fn new(per_token: RateSetting, auth_failures: RateSetting) -> Self {
        Self {
            per_token: TokenLimiter::new(per_token),
            auth_failures: FailureLimiter::new(auth_failures),
            shared: None,
            slices: Mutex::default(),
        }
    }

    fn slices(&self) -> std::sync::MutexGuard<'_, HashMap<(TokenDigest, IpAddr), Slice>> {
        // Plain values, valid whatever a panicking holder left.
        self.slices.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One request from a slice of `token`'s allowance for `address`, if one is left.
    fn serve_from_slice(&self, token: &TokenDigest, address: IpAddr) -> Option<Allowance> {
        let rate = self.per_token.as_ref()?.rate;
        let mut slices = self.slices();
        let slice = slices.get_mut(&(*token, address))?;
        let age = slice.granted.elapsed();
        if slice.left == 0 || age >= SLICE_LIFETIME {
            return None;
        }
        slice.left -= 1;
        Some(Allowance {
            remaining: slice.remaining + slice.left,
            reset: whole_seconds(slice.reset.saturating_sub(age)),
            ..Allowance::of(rate, 0)
        })
    }

    /// The same limits, counted in `shared` while it answers.
    pub fn shared_through(self, shared: SharedCounter) -> Self {
        Self {
            shared: Some(shared),
            ..self
        }
    }

    /// Decides for one request from `address` whose token is `token` (its digest; `None` when
    /// it was not accepted): the address's failures first, then the token's allowance.
    pub async fn admit(&self, address: Option<IpAddr>, token: Option<&TokenDigest>) -> Admission {
        if let Some(shared) = &self.shared {
            let address = address.map(counted_as);
            if let Some((token, address)) = token.zip(address) {
                if let Some(allowance) = self.serve_from_slice(token, address) {
                    return Admission::Admitted(Some(allowance));
                }
            }
            let address_key = address.map(address_key).unwrap_or_default();
            let token_key = token.map(|digest| token_key(&hex::encode(digest)));
            let failures = self
                .auth_failures
                .as_ref()
                .filter(|_| address.is_some())
                .map(FailureLimiter::gcra);
            let per_token = self.per_token.as_ref().map(TokenLimiter::gcra);
            // A slice only for a known address: it is served to that address alone.
            let slice = match (&self.per_token, address) {
                (Some(limiter), Some(_)) => slice_size(limiter.rate),
                _ => 1,
            };
            let verdict = shared
                .admit(
                    (&address_key, failures),
                    (token_key.as_deref(), per_token),
                    slice,
                )
                .await;
            if let Some(verdict) = verdict {
                if let (
                    Verdict::Admitted {
                        remaining,
                        reset,
                        taken,
                    },
                    Some(token),
                    Some(address),
                ) = (verdict, token, address)
                {
                    if taken > 1 {
                        self.slices().insert(
                            (*token, address),
                            Slice {
                                left: taken - 1,
                                remaining,
                                reset,
                                granted: Instant::now(),
                            },
                        );
                    }
                }
                return self.admission_of(verdict);
            }
        }
        self.admit_alone(address, token)
    }

    /// [`Limits::admit`] with this instance's own counters.
    fn admit_alone(&self, address: Option<IpAddr>, token: Option<&TokenDigest>) -> Admission {
        let failures = self.auth_failures.as_ref().zip(address);
        if let Some((failures, address)) = failures {
            if let Some(wait) = failures.refused(address, Instant::now()) {
                return Admission::AddressRefused(wait);
            }
        }
        let Some(token) = token else {
            return match failures
                .and_then(|(failures, address)| failures.record(address, Instant::now()))
            {
                Some(wait) => Admission::AddressRefused(wait),
                None => Admission::FailureCounted,
            };
        };
        match self.per_token.as_ref().map(|limiter| limiter.check(token)) {
            None => Admission::Admitted(None),
            Some(Ok(allowance)) => Admission::Admitted(Some(allowance)),
            Some(Err(refusal)) => Admission::TokenRefused(refusal),
        }
    }

    fn admission_of(&self, verdict: Verdict) -> Admission {
        let rate = self.per_token.as_ref().map(|limiter| limiter.rate);
        match (verdict, rate) {
            (Verdict::AddressRefused(wait), _) => {
                Admission::AddressRefused(whole_seconds(wait).max(1))
            }
            (Verdict::FailureCounted, _) => Admission::FailureCounted,
            (
                Verdict::Admitted {
                    remaining,
                    reset,
                    taken,
                },
                Some(rate),
            ) => {
                Admission::Admitted(Some(Allowance {
                    // The slice taken with this request is still this token's to spend.
                    remaining: remaining + (taken - 1),
                    reset: whole_seconds(reset),
                    ..Allowance::of(rate, remaining)
                }))
            }
            (Verdict::TokenRefused { retry }, Some(rate)) => Admission::TokenRefused(Refusal {
                allowance: Some(Allowance::of(rate, 0)),
                retry_after: whole_seconds(retry).max(1),
            }),
            (_, _) => Admission::Admitted(None),
        }
    }

    /// Writes the allowance headers of an answer to a known token.
    pub fn write_headers(&self, allowance: &Allowance, headers: &mut HeaderMap) {
        if let Some(limiter) = &self.per_token {
            limiter.write_headers(allowance, headers);
        }
    }

    /// Frees the memory of keys with nothing left to count.
    pub fn forget_settled(&self) {
        if let Some(limiter) = &self.per_token {
            limiter.forget_settled();
        }
        if let Some(limiter) = &self.auth_failures {
            limiter.forget_settled(Instant::now());
        }
        self.slices()
            .retain(|_, slice| slice.granted.elapsed() < SLICE_LIFETIME);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        match text.parse().unwrap() {
            RateSetting::Limit(rate) => rate,
            RateSetting::Off => panic!("{text} is off"),
        }
    }

    #[test]
    fn settings_read_and_print() {
        assert_eq!("off".parse(), Ok(RateSetting::Off));
        assert_eq!(" OFF ".parse(), Ok(RateSetting::Off));
        let r = rate("100/s");
        assert_eq!((r.count.get(), r.window), (100, Window::Second));
        let r = rate("30/min");
        assert_eq!((r.count.get(), r.window), (30, Window::Minute));
        for text in ["100/s", "30/min", "off", "1/s"] {
            assert_eq!(text.parse::<RateSetting>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "100",
            "0/s",
            "-1/s",
            "+5/s",
            "5/h",
            "5/sec",
            "5 /s",
            "x/s",
            "/s",
            "5/",
            "99999999999/s",
        ] {
            assert!(bad.parse::<RateSetting>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_byte_of_a_digest_moves_its_hash() {
        use std::hash::BuildHasher;
        let hash =
            |digest: &TokenDigest| BuildHasherDefault::<DigestHasher>::default().hash_one(digest);
        let base = [7_u8; 32];
        let mut seen = std::collections::HashSet::from([hash(&base)]);
        for i in 0..32 {
            let mut other = base;
            other[i] ^= 1;
            assert!(
                seen.insert(hash(&other)),
                "byte {i} did not change the hash"
            );
        }
    }

    #[test]
    fn a_token_gets_its_burst_then_waits() {
        let limiter = TokenLimiter::new("3/min".parse().unwrap()).unwrap();
        let token = [1; 32];
        let first = limiter.check(&token).unwrap();
        assert_eq!(
            first,
            Allowance {
                limit: 3,
                remaining: 2,
                reset: 20,
                window: 60
            }
        );
        assert_eq!(limiter.check(&token).unwrap().remaining, 1);
        let last = limiter.check(&token).unwrap();
        assert_eq!((last.remaining, last.reset), (0, 60));
        let refusal = limiter.check(&token).unwrap_err();
        assert_eq!(refusal.allowance.map(|a| a.remaining), Some(0));
        assert!((19..=20).contains(&refusal.retry_after), "{refusal:?}");
        // Another token has its own allowance.
        assert_eq!(limiter.check(&[2; 32]).unwrap().remaining, 2);
    }

    #[test]
    fn allowance_headers_follow_zendesk_and_the_ietf_draft() {
        let mut headers = HeaderMap::new();
        let limiter = TokenLimiter::new("100/s".parse().unwrap()).unwrap();
        limiter.write_headers(&Allowance::of(rate("100/s"), 57), &mut headers);
        let get = |name: &HeaderName| headers.get(name).unwrap().to_str().unwrap().to_owned();
        assert_eq!(get(&X_RATE_LIMIT), "100");
        assert_eq!(get(&X_RATE_LIMIT_REMAINING), "57");
        assert_eq!(get(&RATELIMIT_POLICY), "\"token\";q=100;w=1");
        assert_eq!(get(&RATELIMIT), "\"token\";r=57;t=1");
        assert_eq!(Allowance::of(rate("100/s"), 100).reset, 0);
        assert_eq!(Allowance::of(rate("30/min"), 27).reset, 6);
    }

    #[test]
    fn failures_are_counted_per_address_and_refused_over_the_limit() {
        let limiter = FailureLimiter::new("3/min".parse().unwrap()).unwrap();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "::1".parse().unwrap());
        let now = Instant::now();
        assert_eq!(limiter.refused(a, now), None);
        for _ in 0..3 {
            assert_eq!(limiter.refused(a, now), None);
            assert_eq!(limiter.record(a, now), None);
        }
        // Three spent at once: the next must wait for one interval (20 s).
        assert_eq!(limiter.refused(a, now), Some(20));
        assert_eq!(limiter.record(a, now), Some(20));
        assert_eq!(limiter.refused(a, now + Duration::from_secs(5)), Some(15));
        assert_eq!(limiter.refused(a, now + Duration::from_secs(20)), None);
        assert_eq!(limiter.refused(b, now), None);

        // Settled addresses are forgotten; busy ones kept.
        assert_eq!(limiter.record(b, now), None);
        limiter.forget_settled(now + Duration::from_secs(21));
        assert_eq!(limiter.tracked(), 1);
        limiter.forget_settled(now + Duration::from_secs(61));
        assert_eq!(limiter.tracked(), 0);
        assert_eq!(limiter.refused(a, now + Duration::from_secs(61)), None);
    }

    #[test]
    fn off_builds_no_limiter() {
        assert!(TokenLimiter::new(RateSetting::Off).is_none());
        assert!(FailureLimiter::new(RateSetting::Off).is_none());
    }
}
