//! Metrics (contract §8.6) in the Prometheus project's text format (OpenMetrics 1.0), with the
//! `prometheus-client` crate: the request duration histogram by method, route template and
//! status; requests in flight; the store's errors by kind; and, read when scraped, the pool's
//! connections by state and the process's memory and CPU.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use visitor_store::Operations;

use crate::http::error::ApiError;

/// The content type of the answer of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The route label of every request that matched no route.
pub const UNMATCHED_ROUTE: &str = "(unmatched)";

/// Upper bounds of the duration buckets, in seconds: OpenTelemetry's advice for
/// `http.server.request.duration`, with finer steps below 5 ms, where this service answers.
const DURATION_BUCKETS: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    http_request_method: &'static str,
    http_route: Cow<'static, str>,
    http_response_status_code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// How a webhook delivery attempt ended, as `webhook_deliveries_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Answered 2xx.
    Success,
    /// Failed, to be tried again (or answered 410, which disables the webhook).
    Failure,
    /// Failed for the last time.
    GaveUp,
}

/// The webhook deliveries' metrics (§10.2): kept whether or not `/metrics` is served.
#[derive(Debug, Clone, Default)]
pub struct WebhookMetrics {
    attempts: Family<OutcomeLabels, Counter>,
    pending: Gauge,
}

impl WebhookMetrics {
    pub fn attempted(&self, outcome: AttemptOutcome) {
        let outcome = match outcome {
            AttemptOutcome::Success => "success",
            AttemptOutcome::Failure => "failure",
            AttemptOutcome::GaveUp => "gave_up",
        };
        self.attempts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn set_pending(&self, pending: u64) {
        self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The service's metrics, shared by every worker.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    store_errors: Family<ErrorLabels, Counter>,
}

impl Metrics {
    /// Metrics for a server over `store` (whose pool they report), with the counter of the
    /// rate-limit store's failed decisions (§11).
    pub fn new(
        store: Arc<dyn Operations>,
        rate_limit_store_errors: Counter,
        webhooks: &WebhookMetrics,
    ) -> Self {
        let durations: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let in_flight = Gauge::default();
        let store_errors = Family::<ErrorLabels, Counter>::default();
        let mut registry = Registry::default();
        registry.register(
            "http_server_request_duration_seconds",
            "Time from a request's arrival to its response's head, by method, route template and status",
            durations.clone(),
        );
        registry.register(
            "http_server_active_requests",
            "Requests being served now",
            in_flight.clone(),
        );
        registry.register(
            "visitors_store_errors",
            "Requests that failed in the store, by kind: unavailable (503) or internal (500)",
            store_errors.clone(),
        );
        registry.register(
            "rate_limit_store_errors",
            "Rate-limit decisions the shared store (--rate-limit-store) did not answer in time or failed; each was taken by the instance alone",
            rate_limit_store_errors,
        );
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome: success (2xx), failure (retried later, or 410, which disables the webhook) or gave_up (the last retry failed)",
            webhooks.attempts.clone(),
        );
        registry.register(
            "webhook_pending_deliveries",
            "Webhook deliveries not yet sent or given up",
            webhooks.pending.clone(),
        );
        registry.register_collector(Box::new(PoolCollector { store }));
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry,
            durations,
            in_flight,
            store_errors,
        }
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub fn start(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Records a finished request; `route` is its template, `None` when no route matched.
    pub fn record(
        &self,
        method: &Method,
        route: Option<Cow<'static, str>>,
        status: u16,
        elapsed: Duration,
        error: Option<&ApiError>,
    ) {
        let labels = RequestLabels {
            http_request_method: method_label(method),
            http_route: route.unwrap_or(Cow::Borrowed(UNMATCHED_ROUTE)),
            http_response_status_code: status,
        };
        self.durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        let kind = match error {
            Some(ApiError::ServiceUnavailable(_)) => "unavailable",
            Some(ApiError::Internal(_)) => "internal",
            _ => return,
        };
        self.store_errors.get_or_create(&ErrorLabels { kind }).inc();
    }

    /// The exposition.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Counts one request in flight while it lives.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The method label: the standard methods by name, anything else as `_OTHER` (OpenTelemetry's
/// rule), so a client cannot create series at will.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

/// The pool's connections by state, read when scraped.
#[derive(Debug)]
struct PoolCollector {
    store: Arc<dyn Operations>,
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(pool) = self.store.pool_status() else {
            return Ok(());
        };
        let connections = encoder.encode_descriptor(
            "db_client_connections",
            "Open database connections by state: used (lent to a request) or idle",
            None,
            MetricType::Gauge,
        )?;
        let mut family = connections;
        for (state, count) in [("used", pool.used), ("idle", pool.idle)] {
            let labels = [("state", state)];
            ConstGauge::new(i64::from(count)).encode(family.encode_family(&labels)?)?;
        }
        let max = encoder.encode_descriptor(
            "db_client_connections_max",
            "The most database connections the pool opens",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(pool.max)).encode(max)
    }
}

/// The process's CPU time, memory, threads and file descriptors, read from `/proc/self` when
/// scraped (Linux); absent elsewhere.
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks per second of `/proc/self/stat` (`USER_HZ`, 100 on every Linux ABI Rust targets).
const TICKS_PER_SECOND: f64 = 100.0;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(process) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(process.cpu_seconds).encode(cpu)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                process.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                process.virtual_bytes,
            ),
            ("process_threads", "OS threads", process.threads),
            (
                "process_open_fds",
                "Open file descriptors",
                process.open_fds,
            ),
        ] {
            let gauge = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(gauge)?;
        }
        Ok(())
    }
}

#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    threads: u64,
    open_fds: u64,
}

impl ProcessStats {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        let mut stats = Self::parse(&stat, &status)?;
        stats.open_fds = u64::try_from(open_fds).unwrap_or(u64::MAX);
        Some(stats)
    }

    /// Reads CPU ticks from `stat` (fields 14 and 15, counted after the command's closing
    /// parenthesis) and memory and threads from `status` (`VmRSS`, `VmSize` in kB, `Threads`).
    fn parse(stat: &str, status: &str) -> Option<Self> {
        let after_command = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_command.split_whitespace().collect();
        // `after_command` starts at field 3 (state), so field n is at index n - 3.
        let ticks = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let cpu_seconds = (ticks(14)? + ticks(15)?) as f64 / TICKS_PER_SECOND;
        let value = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        };
        Some(Self {
            cpu_seconds,
            resident_bytes: value("VmRSS:")? * 1024,
            virtual_bytes: value("VmSize:")? * 1024,
            threads: value("Threads:")?,
            open_fds: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use visitor_store::MemoryStore;

    /// One sample line of the text format.
    fn sample_line(name: &str, labels: &str, value: &str) -> String {
        format!("{name}{{{labels}}} {value}\n")
    }

    fn metrics() -> Metrics {
        Metrics::new(
            Arc::new(MemoryStore::new()),
            Counter::default(),
            &WebhookMetrics::default(),
        )
    }

    #[test]
    fn requests_are_counted_by_method_route_and_status() {
        let metrics = metrics();
        let route = || Some(Cow::Borrowed("/api/v2/chat/visitors/{visitor_id}"));
        for _ in 0..3 {
            metrics.record(&Method::GET, route(), 200, Duration::from_micros(300), None);
        }
        metrics.record(&Method::GET, None, 404, Duration::from_millis(2), None);
        let weird = Method::from_bytes(b"BREW").unwrap();
        metrics.record(&weird, None, 404, Duration::from_millis(2), None);
        let text = metrics.render().unwrap();
        let labels = "http_request_method=\"GET\",http_route=\"/api/v2/chat/visitors/{visitor_id}\",http_response_status_code=\"200\"";
        assert!(text.contains(&sample_line(
            "http_server_request_duration_seconds_count",
            labels,
            "3"
        )));
        assert!(
            text.contains(&sample_line(
                "http_server_request_duration_seconds_bucket",
                &format!("le=\"0.0005\",{labels}"),
                "3"
            )),
            "{text}"
        );
        assert!(text.contains(&sample_line(
            "http_server_request_duration_seconds_bucket",
            &format!("le=\"0.00025\",{labels}"),
            "0"
        )));
        assert!(text.contains("http_route=\"(unmatched)\",http_response_status_code=\"404\"} 1"));
        assert!(text.contains("http_request_method=\"_OTHER\""));
        assert!(!text.contains("BREW"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn in_flight_requests_count_while_they_last() {
        let metrics = metrics();
        let first = metrics.start();
        let second = metrics.start();
        assert!(metrics
            .render()
            .unwrap()
            .contains("http_server_active_requests 2\n"));
        drop((first, second));
        assert!(metrics
            .render()
            .unwrap()
            .contains("http_server_active_requests 0\n"));
    }

    #[test]
    fn store_errors_are_counted_by_kind() {
        let metrics = metrics();
        let unavailable = ApiError::ServiceUnavailable("down".into());
        let internal = ApiError::internal("bug");
        for error in [&unavailable, &unavailable, &internal, &ApiError::NotFound] {
            let status = error.status_and_code().0.as_u16();
            metrics.record(&Method::GET, None, status, Duration::ZERO, Some(error));
        }
        let text = metrics.render().unwrap();
        assert!(text.contains("visitors_store_errors_total{kind=\"unavailable\"} 2\n"));
        assert!(text.contains("visitors_store_errors_total{kind=\"internal\"} 1\n"));
    }

    #[test]
    fn the_process_is_read_from_proc() {
        let stat = "4242 (visitor (http)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 130 0 0 20 0 5 0 1234 1000 200";
        let status = "Name:\tvisitor-http\nVmSize:\t  20480 kB\nVmRSS:\t   8192 kB\nThreads:\t5\n";
        let stats = ProcessStats::parse(stat, status).unwrap();
        assert_eq!(
            stats,
            ProcessStats {
                cpu_seconds: 3.8,
                resident_bytes: 8192 * 1024,
                virtual_bytes: 20480 * 1024,
                threads: 5,
                open_fds: 0,
            }
        );
        assert_eq!(ProcessStats::parse("no parenthesis", status), None);
        let text = metrics().render().unwrap();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
        // The in-memory store has no pool.
        assert!(!text.contains("db_client_connections"));
    }
}
