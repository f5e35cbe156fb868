//! One rate-limit budget for many instances (contract §11): both limits of §8.5 counted in
//! Redis, one round trip per decision — a GCRA in one Lua script, run with Redis's own clock
//! (the algorithm of go-redis/redis_rate), through a `ConnectionManager` that reconnects by
//! itself. When Redis does not answer within [`DECISION_TIMEOUT`], the instance decides alone
//! (the caller's local limiter, at the configured rate), warns once and counts the failure; a
//! slow answer costs only its own decision, a Redis that refuses or stays slow is asked again
//! after [`RETRY_AFTER_FAILURE`]. A request is never failed for it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

/// How long a decision waits for Redis before the instance decides alone (the default of
/// `AppSettings::rate_limit_store_timeout`).
pub const DECISION_TIMEOUT: Duration = Duration::from_millis(20);
/// After Redis failed (refused, reset, or [`SLOW_IN_A_ROW`] answers too slow in a row), how
/// long decisions are taken alone before Redis is asked again, so a Redis that is down costs
/// one slow decision in many.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(250);

/// Answers too slow in a row that count as Redis failing. One slow answer costs only its own
/// decision, taken alone: an instance alone has its whole burst to give, so a quarter of a
/// second alone for every slow answer would admit far more than the shared count.
pub const SLOW_IN_A_ROW: u32 = 3;

/// One decision for one request, in one round trip: the GCRA (as go-redis/redis_rate) on the
/// client address's failed authentications and on the token, with Redis's clock.
/// KEYS[1]: the address's counter, KEYS[2]: the token's. ARGV[1], ARGV[2]: the address limit's
/// emission interval and tolerance (the interval × (burst − 1)), in µs, 0 when off; ARGV[3],
/// ARGV[4]: the token limit's; ARGV[5]: 1 when the token was not accepted (a failure to count);
/// ARGV[6]: how many of the token's requests to take at once (a slice; 1 when the address has
/// failures to its name in the window). Returns {verdict, remaining, retry after µs, reset
/// after µs, taken}, the verdict being 1: the address is over its limit; 2: the failure is
/// counted; 3: the token is admitted (`taken` requests spent, ≥ 1); 4: the token is over its
/// limit; 5: nothing to count.
const ADMIT: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
-- Spends up to `want` requests of the counter at `key`, as many as are admitted now.
local function gcra(key, interval, tolerance, want)
  local stored = tonumber(redis.call('GET', key))
  local tat = stored or now
  if tat < now then tat = now end
  local ahead = tat - now
  if ahead > tolerance then
    return false, 0, ahead - tolerance, ahead, 0, stored ~= nil
  end
  local available = math.floor((tolerance - ahead) / interval) + 1
  local taken = math.min(want, available)
  local new_tat = tat + interval * taken
  if taken > 0 then
    redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
  end
  return true, available - math.max(taken, 1), 0, new_tat - now, taken, stored ~= nil and stored > now
end
local failed = ARGV[5] == '1'
local want = tonumber(ARGV[6])
local address_interval = tonumber(ARGV[1])
if address_interval > 0 then
  local admitted, _, retry, _, _, failures = gcra(KEYS[1], address_interval, tonumber(ARGV[2]), failed and 1 or 0)
  if not admitted then return {1, 0, retry, 0, 0} end
  if failures then want = 1 end
end
if failed then return {2, 0, 0, 0, 0} end
local token_interval = tonumber(ARGV[3])
if token_interval > 0 then
  local admitted, remaining, retry, reset, taken = gcra(KEYS[2], token_interval, tonumber(ARGV[4]), want)
  if admitted then return {3, remaining, retry, reset, taken} end
  return {4, 0, retry, reset, 0}
end
return {5, 0, 0, 0, 0}
";

/// A limit as the script takes it: the emission interval and the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    pub interval: Duration,
    pub tolerance: Duration,
}

/// What the shared counters decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The address is over its failed-authentication limit: wait this long.
    AddressRefused(Duration),
    /// The token was not accepted, and the failure is counted.
    FailureCounted,
    /// The token is admitted: `taken` requests spent (this one and a slice for later ones
    /// from the same address), `remaining` more may come at once; whole again after `reset`.
    Admitted {
        remaining: u32,
        reset: Duration,
        taken: u32,
    },
    /// The token is over its limit: wait `retry`.
    TokenRefused { retry: Duration },
    /// No limit applies.
    Unlimited,
}

/// The counters in Redis that every instance sharing it uses.
pub struct SharedCounter {
    connection: ConnectionManager,
    script: Script,
    /// Failed decisions, for `/metrics` (`rate_limit_store_errors_total`).
    errors: Counter,
    /// Whether the last attempt failed (the warning is written once per outage).
    failing: AtomicBool,
    /// Answers too slow since the last one in time.
    slow: AtomicU32,
    /// How long a decision waits for Redis.
    timeout: Duration,
    /// Until when (milliseconds since `started`) decisions are taken alone.
    alone_until: AtomicU64,
    started: Instant,
}

impl std::fmt::Debug for SharedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCounter")
            .field("failing", &self.failing)
            .finish_non_exhaustive()
    }
}

impl SharedCounter {
    /// A counter on the Redis at `url` (`redis://HOST:PORT[/DB]`) whose decisions wait at most
    /// `timeout`; connects on first use.
    pub fn new(url: &str, timeout: Duration, errors: Counter) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|error| format!("--rate-limit-store {url:?} is not a Redis URL: {error}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout * 5))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|error| format!("--rate-limit-store {url:?}: {error}"))?;
        Ok(Self {
            connection,
            script: Script::new(ADMIT),
            errors,
            timeout,
            failing: AtomicBool::new(false),
            slow: AtomicU32::new(0),
            alone_until: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// Connects and loads the script before the first decision, so that no request waits for
    /// the connection to be made (a first decision that did would likely miss its 20 ms and be
    /// taken alone). A failure here is only logged: decisions connect again by themselves.
    pub async fn warm_up(&self) {
        let mut connection = self.connection.clone();
        match self.script.load_async(&mut connection).await {
            Ok(_) => tracing::info!("rate limits: counted in the shared store"),
            Err(error) => tracing::warn!(
                %error,
                "the rate-limit store cannot be reached yet: this instance counts alone until it can"
            ),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Decides for one request from `address` (its counter's key and limit) with `token` (its
    /// counter's key, `None` when the token was not accepted, and limit), or `None` when the
    /// instance must decide alone: Redis failed or was too slow now, or less than
    /// [`RETRY_AFTER_FAILURE`] ago.
    pub async fn admit(
        &self,
        address: (&str, Option<Gcra>),
        token: (Option<&str>, Option<Gcra>),
        slice: u32,
    ) -> Option<Verdict> {
        if self.now_ms() < self.alone_until.load(Ordering::Relaxed) {
            return None;
        }
        let off = Gcra {
            interval: Duration::ZERO,
            tolerance: Duration::ZERO,
        };
        let (address_key, address_limit) = address;
        let (token_key, token_limit) = token;
        let address_limit = address_limit.unwrap_or(off);
        let token_limit = token_limit.unwrap_or(off);
        let mut connection = self.connection.clone();
        let mut invocation = self.script.key(address_key);
        invocation
            .key(token_key.unwrap_or(""))
            .arg(micros(address_limit.interval))
            .arg(micros(address_limit.tolerance))
            .arg(micros(token_limit.interval))
            .arg(micros(token_limit.tolerance))
            .arg(u8::from(token_key.is_none()))
            .arg(slice.max(1));
        let answer = tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<(u8, u64, u64, u64, u64)>(&mut connection),
        )
        .await;
        let (verdict, remaining, retry, reset, taken) = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                self.failed(&error.to_string(), true);
                return None;
            }
            Err(_) => {
                let in_a_row = self.slow.fetch_add(1, Ordering::Relaxed) + 1;
                self.failed(
                    "no answer within the decision timeout",
                    in_a_row >= SLOW_IN_A_ROW,
                );
                return None;
            }
        };
        self.slow.store(0, Ordering::Relaxed);
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("the rate-limit store answers again: the limits are shared again");
        }
        let retry = Duration::from_micros(retry);
        Some(match verdict {
            1 => Verdict::AddressRefused(retry),
            2 => Verdict::FailureCounted,
            3 => Verdict::Admitted {
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset: Duration::from_micros(reset),
                taken: u32::try_from(taken).unwrap_or(1).max(1),
            },
            4 => Verdict::TokenRefused { retry },
            _ => Verdict::Unlimited,
        })
    }

    /// Counts a decision Redis did not give; `back_off`: decide alone for
    /// [`RETRY_AFTER_FAILURE`] before asking again.
    fn failed(&self, cause: &str, back_off: bool) {
        self.errors.inc();
        if back_off {
            let wait = u64::try_from(RETRY_AFTER_FAILURE.as_millis()).unwrap_or(0);
            self.alone_until
                .store(self.now_ms() + wait, Ordering::Relaxed);
        }
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                cause,
                "the rate-limit store does not answer: this instance counts alone until it does"
            );
        }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The key of a token's counter (by its digest, never the token).
pub fn token_key(digest_hex: &str) -> String {
    format!("visitors:ratelimit:token:{digest_hex}")
}

/// The key of a client address's counter of failed authentications.
pub fn address_key(address: IpAddr) -> String {
    format!("visitors:ratelimit:auth:{address}")
}
