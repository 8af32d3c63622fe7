//! The live status page on the admin listener: `/` (one HTML page, its
//! script at `/status.js`) polls `/status.json` every second and draws
//! the last ten minutes of throughput and answer latency, beside the
//! replica's state, its live transactions, the participants' health and
//! in-doubt branches, and the hazards seen.
//!
//! Like `/metrics` it shows counts and durations, never a transaction's
//! id, key, label or statements, and it takes no command. A sampler
//! keeps one point per second: transactions ended in it and the answer
//! latency's median and 99th percentile, estimated from buckets 25% wide
//! that the actors fill with one atomic add each.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::Shared;

/// Points kept: ten minutes, one a second.
const POINTS: usize = 600;
/// Answer-latency buckets: bucket `i` holds answers up to
/// `FIRST_BUCKET_US * GROWTH^i`, from 0.1 ms to about a minute.
const BUCKETS: usize = 60;
const FIRST_BUCKET_US: f64 = 100.0;
const GROWTH: f64 = 1.25;

const PAGE: &str = include_str!("status_page.html");
const SCRIPT: &str = include_str!("status_page.js");

/// What the actors record for the page (as they record the metrics).
pub struct Recorder {
    committed: AtomicU64,
    aborted: AtomicU64,
    answers: [AtomicU64; BUCKETS],
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            committed: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            answers: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Recorder {
    pub fn ended(&self, committed: bool) {
        let counter = if committed { &self.committed } else { &self.aborted };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn answered(&self, took: Duration) {
        let us = took.as_secs_f64() * 1e6;
        let bucket = if us <= FIRST_BUCKET_US {
            0
        } else {
            ((us / FIRST_BUCKET_US).ln() / GROWTH.ln()).ceil() as usize
        };
        self.answers[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> Totals {
        Totals {
            committed: self.committed.load(Ordering::Relaxed),
            aborted: self.aborted.load(Ordering::Relaxed),
            answers: std::array::from_fn(|i| self.answers[i].load(Ordering::Relaxed)),
        }
    }
}

#[derive(Clone, Copy)]
struct Totals {
    committed: u64,
    aborted: u64,
    answers: [u64; BUCKETS],
}

/// One second of the chart.
#[derive(Debug, Clone, Serialize)]
struct Point {
    unix_ms: u64,
    committed: u64,
    aborted: u64,
    /// Answer latency in ms (upper bounds of their buckets); 0 when no
    /// client was answered in that second.
    p50_ms: f64,
    p99_ms: f64,
}

/// The sampled points, newest last.
#[derive(Default)]
pub struct Series {
    points: Mutex<VecDeque<Point>>,
}

impl Series {
    /// Samples `shared`'s recorder every second until `stopped`.
    pub async fn run(shared: Arc<Shared>, stopped: CancellationToken) {
        let mut last = shared.metrics.page.read();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = stopped.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = shared.metrics.page.read();
            let point = point(&last, &now);
            last = now;
            let mut points = shared
                .series
                .points
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if points.len() == POINTS {
                points.pop_front();
            }
            points.push_back(point);
        }
    }
}

fn point(last: &Totals, now: &Totals) -> Point {
    let answers: Vec<u64> = (0..BUCKETS).map(|i| now.answers[i] - last.answers[i]).collect();
    Point {
        unix_ms: unix_ms(SystemTime::now()),
        committed: now.committed - last.committed,
        aborted: now.aborted - last.aborted,
        p50_ms: quantile(&answers, 0.5),
        p99_ms: quantile(&answers, 0.99),
    }
}

/// The upper bound (ms) of the bucket holding quantile `q`; 0 if empty.
fn quantile(buckets: &[u64], q: f64) -> f64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return FIRST_BUCKET_US * GROWTH.powi(i as i32) / 1000.0;
        }
    }
    FIRST_BUCKET_US * GROWTH.powi(BUCKETS as i32 - 1) / 1000.0
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Serialize)]
struct Status {
    replica: String,
    version: &'static str,
    uptime_s: u64,
    draining: bool,
    live: usize,
    committed_total: u64,
    aborted_total: u64,
    hazards_total: u64,
    unknown_answers_total: u64,
    in_doubt: u64,
    participants: Vec<Participant>,
    points: Vec<Point>,
}

#[derive(Serialize)]
struct Participant {
    name: String,
    reachable: bool,
    in_doubt: u32,
    last_error: String,
}

fn status(shared: &Shared) -> Status {
    let totals = shared.metrics.page.read();
    let participants: Vec<Participant> = shared
        .participants
        .all()
        .map(|p| {
            let info = p.info();
            Participant {
                name: info.name,
                reachable: info.reachable,
                in_doubt: info.in_doubt,
                last_error: if info.reachable { String::new() } else { info.last_error },
            }
        })
        .collect();
    Status {
        replica: shared.config.name.clone(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: shared.started.elapsed().map_or(0, |d| d.as_secs()),
        draining: shared.shutdown.is_cancelled(),
        live: shared.txns.live(),
        committed_total: totals.committed,
        aborted_total: totals.aborted,
        hazards_total: shared.metrics.hazards_total(),
        unknown_answers_total: shared.metrics.unknown_answers_total(),
        in_doubt: participants.iter().map(|p| u64::from(p.in_doubt)).sum(),
        participants,
        points: shared
            .series
            .points
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect(),
    }
}

/// The page's routes, for [`tandem_common::admin::serve`].
pub fn routes(shared: Arc<Shared>) -> Router {
    // The page loads nothing but itself and its script.
    let headers = |content_type: &'static str| {
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'unsafe-inline'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ]
    };
    Router::new()
        .route(
            "/",
            get(move || async move { (headers("text/html; charset=utf-8"), PAGE) }),
        )
        .route(
            "/status.js",
            get(move || async move { (headers("text/javascript; charset=utf-8"), SCRIPT) }),
        )
        .route(
            "/status.json",
            get(move || async move {
                let body = serde_json::to_string(&status(&shared)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                (headers("application/json"), body).into_response()
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_bucket_that_holds_them() {
        let recorder = Recorder::default();
        let before = recorder.read();
        for _ in 0..98 {
            recorder.answered(Duration::from_micros(900));
        }
        recorder.answered(Duration::from_millis(40));
        recorder.answered(Duration::from_millis(40));
        recorder.ended(true);
        recorder.ended(false);
        let p = point(&before, &recorder.read());
        assert_eq!((p.committed, p.aborted), (1, 1));
        // 0.9 ms lies in the bucket up to 0.1 × 1.25^10 ≈ 0.93 ms.
        assert!((0.9..1.0).contains(&p.p50_ms), "{p:?}");
        assert!((40.0..50.0).contains(&p.p99_ms), "{p:?}");
        let quiet = point(&recorder.read(), &recorder.read());
        assert_eq!((quiet.committed, quiet.p50_ms, quiet.p99_ms), (0, 0.0, 0.0));
    }

    #[test]
    fn an_answer_slower_than_the_last_bucket_lands_in_it() {
        let recorder = Recorder::default();
        recorder.answered(Duration::from_secs(3600));
        recorder.answered(Duration::ZERO);
        let totals = recorder.read();
        assert_eq!(totals.answers[BUCKETS - 1], 1);
        assert_eq!(totals.answers[0], 1);
    }
}
