//! Requests seen by this process, per route pattern and status, with a latency
//! histogram: what `/metrics` reports (`crate::prometheus`), kept apart from
//! the router's state so neither module imports the other.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
struct Series {
    /// Requests per status.
    statuses: BTreeMap<u16, u64>,
    /// Cumulative counts per bucket, then the sum and count.
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Requests seen by this process, per route.
#[derive(Default)]
pub struct Recorder {
    routes: Mutex<BTreeMap<String, Series>>,
}

impl Recorder {
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().expect("recorder");
        // The route's name is allocated once, on its first request.
        let s = match routes.get_mut(route) {
            Some(s) => s,
            None => routes.entry(route.to_owned()).or_default(),
        };
        *s.statuses.entry(status).or_default() += 1;
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                s.buckets[i] += 1;
            }
        }
        s.sum += seconds;
        s.count += 1;
    }

    /// Appends the request series in Prometheus' text format.
    pub fn write(&self, out: &mut String) {
        let routes = self.routes.lock().expect("recorder");
        out.push_str("# HELP berth_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE berth_http_requests_total counter\n");
        for (route, s) in routes.iter() {
            for (status, n) in &s.statuses {
                let _ = writeln!(
                    out,
                    "berth_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP berth_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE berth_http_request_duration_seconds histogram\n");
        for (route, s) in routes.iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "berth_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "berth_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "berth_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "berth_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                s.count
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let r = Recorder::default();
        r.observe("/health", 200, 0.003);
        r.observe("/health", 200, 0.2);
        r.observe("/health", 503, 20.0);
        let mut out = String::new();
        r.write(&mut out);
        assert!(
            out.contains("berth_http_requests_total{route=\"/health\",status=\"200\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("berth_http_requests_total{route=\"/health\",status=\"503\"} 1"),
            "{out}"
        );
        assert!(out.contains("le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("le=\"0.25\"} 2\n"), "{out}");
        assert!(out.contains("le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("le=\"+Inf\"} 3\n"), "{out}");
        assert!(
            out.contains("berth_http_request_duration_seconds_count{route=\"/health\"} 3"),
            "{out}"
        );
    }
}
