//! What a run measured, as text for people or one JSON object for scripts.
//! Latencies are recorded in microseconds and reported in milliseconds.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// The slowest latency a histogram keeps exactly; slower ones are clamped to it.
const HIGHEST_MICROSECONDS: u64 = 60_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_MICROSECONDS, 3).expect("static histogram bounds are valid")
}

pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let microseconds = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(microseconds.clamp(1, HIGHEST_MICROSECONDS));
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latencies {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latencies {
    pub fn of(histogram: &Histogram<u64>) -> Latencies {
        if histogram.is_empty() {
            return Latencies::default();
        }
        let milliseconds = |microseconds: u64| microseconds as f64 / 1000.0;
        Latencies {
            p50_ms: milliseconds(histogram.value_at_quantile(0.5)),
            p90_ms: milliseconds(histogram.value_at_quantile(0.9)),
            p99_ms: milliseconds(histogram.value_at_quantile(0.99)),
            p999_ms: milliseconds(histogram.value_at_quantile(0.999)),
            max_ms: milliseconds(histogram.max()),
            mean_ms: histogram.mean() / 1000.0,
        }
    }
}

/// One finished run.
pub struct Summary {
    pub workload: &'static str,
    pub endpoints: Vec<String>,
    pub connections: usize,
    pub clients: usize,
    pub elapsed: Duration,
    /// Requests answered successfully.
    pub operations: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency: Latencies,
    /// Workload-specific numbers (watch-latency's event counts), in JSON order.
    pub extra: Vec<(&'static str, Value)>,
}

impl Summary {
    pub fn throughput_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.operations as f64 / seconds
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> Value {
        let latency = &self.latency;
        let mut object = Map::new();
        let fields = [
            ("workload", json!(self.workload)),
            ("endpoints", json!(self.endpoints)),
            ("conns", json!(self.connections)),
            ("clients", json!(self.clients)),
            ("elapsed_s", json!(round(self.elapsed.as_secs_f64()))),
            ("ops", json!(self.operations)),
            ("errors", json!(self.errors)),
            ("throughput", json!(round(self.throughput_per_second()))),
            ("p50_ms", json!(round(latency.p50_ms))),
            ("p90_ms", json!(round(latency.p90_ms))),
            ("p99_ms", json!(round(latency.p99_ms))),
            ("p999_ms", json!(round(latency.p999_ms))),
            ("max_ms", json!(round(latency.max_ms))),
            ("mean_ms", json!(round(latency.mean_ms))),
        ];
        for (name, value) in fields.into_iter().chain(self.extra.iter().cloned()) {
            object.insert(name.to_string(), value);
        }
        if let Some(error) = &self.first_error {
            object.insert("first_error".to_string(), json!(error));
        }
        Value::Object(object)
    }

    pub fn to_text(&self) -> String {
        let latency = &self.latency;
        let mut text = format!(
            "{} on {} ({} conns, {} clients): {} ops in {:.2} s = {:.1} ops/s, {} errors\n\
             latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}\n",
            self.workload,
            self.endpoints.join(","),
            self.connections,
            self.clients,
            self.operations,
            self.elapsed.as_secs_f64(),
            self.throughput_per_second(),
            self.errors,
            latency.p50_ms,
            latency.p90_ms,
            latency.p99_ms,
            latency.p999_ms,
            latency.max_ms,
            latency.mean_ms,
        );
        for (name, value) in &self.extra {
            text.push_str(&format!("{name}: {value}\n"));
        }
        if let Some(error) = &self.first_error {
            text.push_str(&format!("first error: {error}\n"));
        }
        text
    }
}

/// Three decimals: microsecond resolution in milliseconds, and no float noise in the JSON.
fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(histogram: &Histogram<u64>, operations: u64, elapsed: Duration) -> Summary {
        Summary {
            workload: "put",
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            connections: 1,
            clients: 2,
            elapsed,
            operations,
            errors: 3,
            first_error: Some("status: Unavailable".to_string()),
            latency: Latencies::of(histogram),
            extra: vec![("events", json!(7))],
        }
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut histogram = new_histogram();
        for microseconds in 1..=1000 {
            record(&mut histogram, Duration::from_micros(microseconds));
        }
        let latency = Latencies::of(&histogram);
        assert_eq!(latency.p50_ms, 0.5);
        assert_eq!(latency.p90_ms, 0.9);
        assert_eq!(latency.p99_ms, 0.99);
        assert_eq!(latency.p999_ms, 0.999);
        assert_eq!(latency.max_ms, 1.0);
        assert!((latency.mean_ms - 0.5005).abs() < 0.001, "{latency:?}");
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let mut histogram = new_histogram();
        record(&mut histogram, Duration::ZERO);
        record(&mut histogram, Duration::from_secs(3600));
        assert_eq!(histogram.len(), 2);
        assert_eq!(histogram.min(), 1);
        assert!(histogram.max() >= HIGHEST_MICROSECONDS, "{}", histogram.max());
    }

    #[test]
    fn json_carries_every_number_a_script_reads() {
        let mut histogram = new_histogram();
        record(&mut histogram, Duration::from_millis(2));
        let value = summary(&histogram, 500, Duration::from_millis(250)).to_json();
        assert_eq!(value["ops"], 500);
        assert_eq!(value["errors"], 3);
        assert_eq!(value["throughput"], 2000.0);
        assert_eq!(value["p50_ms"], 2.0);
        assert_eq!(value["p99_ms"], 2.0);
        assert_eq!(value["events"], 7);
        assert_eq!(value["first_error"], "status: Unavailable");
        for key in ["p90_ms", "p999_ms", "max_ms", "clients", "conns", "elapsed_s"] {
            assert!(value.get(key).is_some(), "{key} missing from {value}");
        }
        // One line: scripts read it with line tools.
        assert!(!value.to_string().contains('\n'));
    }

    #[test]
    fn an_empty_run_reports_zeros_not_nan() {
        let value = summary(&new_histogram(), 0, Duration::ZERO).to_json();
        assert_eq!(value["throughput"], 0.0);
        assert_eq!(value["p99_ms"], 0.0);
        let text = summary(&new_histogram(), 0, Duration::ZERO).to_text();
        assert!(text.contains("0 ops") && !text.contains("NaN"), "{text}");
    }
}
