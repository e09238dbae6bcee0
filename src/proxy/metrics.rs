//! What `GET /metrics` reports, in the OpenMetrics text format Prometheus scrapes.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabel {
    slot: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<StatusLabel, Counter>,
    /// `requests{status="200"}`, the common case, without the family's lock and hash.
    ok: Counter,
    upstream_latency: Histogram,
    upstream_errors: Counter,
    refreshes: Family<OutcomeLabel, Counter>,
    open_streams: Gauge,
    pool_requests: Family<SlotLabel, Counter>,
    pool_cooldowns: Family<SlotLabel, Counter>,
    pool_failovers: Family<SlotLabel, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tokenkeeper_proxy");
        let requests = Family::<StatusLabel, Counter>::default();
        // 1 ms to about 65 s: a Messages answer's headers arrive anywhere in that range.
        let upstream_latency = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let upstream_errors = Counter::default();
        let refreshes = Family::<OutcomeLabel, Counter>::default();
        let open_streams = Gauge::default();
        registry.register(
            "requests",
            "Requests answered, by HTTP status (the proxy's own answers included)",
            requests.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time from sending a request upstream to its response headers",
            upstream_latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Requests the upstream could not be reached for (answered 502)",
            upstream_errors.clone(),
        );
        registry.register(
            "token_refreshes",
            "Token renewals after an upstream 401, by outcome",
            refreshes.clone(),
        );
        registry.register(
            "open_streams",
            "Response bodies being streamed to clients right now",
            open_streams.clone(),
        );
        let pool_requests = Family::<SlotLabel, Counter>::default();
        let pool_cooldowns = Family::<SlotLabel, Counter>::default();
        let pool_failovers = Family::<SlotLabel, Counter>::default();
        registry.register(
            "pool_requests",
            "Requests sent upstream on each slot of the pool (resends included)",
            pool_requests.clone(),
        );
        registry.register(
            "pool_cooldowns",
            "Times a slot of the pool reached its limit and was left alone until its reset",
            pool_cooldowns.clone(),
        );
        registry.register(
            "pool_failovers",
            "Requests sent again on another slot after this one reached its limit",
            pool_failovers.clone(),
        );
        let ok = requests.get_or_create(&StatusLabel { status: 200 }).clone();
        Self {
            registry,
            requests,
            ok,
            upstream_latency,
            upstream_errors,
            refreshes,
            open_streams,
            pool_requests,
            pool_cooldowns,
            pool_failovers,
        }
    }

    pub fn pool_request(&self, slot: &str) {
        self.pool_requests.get_or_create(&label(slot)).inc();
    }

    pub fn pool_cooled(&self, slot: &str) {
        self.pool_cooldowns.get_or_create(&label(slot)).inc();
    }

    pub fn pool_failover(&self, from: &str) {
        self.pool_failovers.get_or_create(&label(from)).inc();
    }

    pub fn answered(&self, status: u16) {
        if status == 200 {
            self.ok.inc();
            return;
        }
        self.requests.get_or_create(&StatusLabel { status }).inc();
    }

    pub fn upstream_answered(&self, latency: Duration) {
        self.upstream_latency.observe(latency.as_secs_f64());
    }

    pub fn upstream_failed(&self) {
        self.upstream_errors.inc();
    }

    /// `outcome` is `refreshed` (a new token was had) or `failed`.
    pub fn renewed(&self, outcome: &'static str) {
        self.refreshes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn stream_opened(&self) {
        self.open_streams.inc();
    }

    pub fn stream_closed(&self) {
        self.open_streams.dec();
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

fn label(slot: &str) -> SlotLabel {
    SlotLabel {
        slot: slot.to_string(),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_labels() {
        let metrics = Metrics::new();
        metrics.answered(200);
        metrics.answered(200);
        metrics.answered(401);
        metrics.upstream_answered(Duration::from_millis(3));
        metrics.renewed("refreshed");
        metrics.stream_opened();
        let text = metrics.render();
        assert!(
            text.contains("tokenkeeper_proxy_requests_total{status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tokenkeeper_proxy_requests_total{status=\"401\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tokenkeeper_proxy_upstream_latency_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("tokenkeeper_proxy_token_refreshes_total{outcome=\"refreshed\"} 1"));
        assert!(text.contains("tokenkeeper_proxy_open_streams 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
