//! Admission: how many requests one process works on at once
//! (`BERTH_MAX_REQUESTS`), and how many wait for a turn (`BERTH_MAX_QUEUED`);
//! past both, a 503 with `Retry-After` at once.
//!
//! Without it every accepted request is worked on at the same time: above
//! what the cores can serve, each holds its half-rendered page while the
//! backlog grows, and the memory grew with it (3.5 GiB after 15 s at 1,500
//! req/s, kept by glibc after the burst; docs/BENCHMARKS.md, "Memory after
//! load, and under overload"). Admitted work is bounded; a waiting request
//! holds only its parsed head. A request leaves the queue when its client
//! goes (the waiting future is dropped), so the count stays true.
//!
//! The permit is held until the response's head is ready: pages render
//! before it (`SsrMode::Async`), and long bodies (log downloads, the audit
//! export, event streams, sockets after their upgrade) do not hold a turn for
//! their whole life. `/health` is never queued: a load balancer or Docker's
//! health check must get an answer from a busy process, and it is cheap (one
//! cached check a second).

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The process's turns and its queue.
pub struct Admission {
    turns: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Admission {
    /// `in_flight` requests at once (at least one), `queued` more waiting.
    pub fn new(in_flight: usize, queued: usize) -> Arc<Self> {
        Arc::new(Self {
            turns: Arc::new(Semaphore::new(in_flight.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting: queued,
        })
    }

    /// Requests waiting for a turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Counts one waiting request for as long as it waits, however the wait
/// ends (a turn, or the client gone and the future dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The middleware: a turn now, a place in the queue, or a 503.
pub async fn admit(State(admission): State<Arc<Admission>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let turn = match admission.turns.clone().try_acquire_owned() {
        Ok(turn) => turn,
        Err(_) => {
            if admission.waiting.fetch_add(1, Ordering::Relaxed) >= admission.max_waiting {
                admission.waiting.fetch_sub(1, Ordering::Relaxed);
                return busy();
            }
            let _waiting = Waiting(&admission.waiting);
            match admission.turns.clone().acquire_owned().await {
                Ok(turn) => turn,
                // The semaphore is never closed; answer as busy rather than panic.
                Err(_) => return busy(),
            }
        }
    };
    let response = next.run(req).await;
    drop(turn);
    response
}

fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        axum::Json(app::error::AppError::Transport(
            "Berth is busy with other requests (BERTH_MAX_REQUESTS and BERTH_MAX_QUEUED); try again in a moment".into(),
        )),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{admit, Admission};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    /// One turn, one place in the queue: a third request is refused at once
    /// with Retry-After, `/health` still answers, the queued one gets the turn
    /// when it frees, and a queued request whose client left frees its place.
    #[tokio::test]
    async fn a_full_process_queues_then_refuses_and_health_still_answers() {
        let admission = Admission::new(1, 1);
        let release = Arc::new(Notify::new());
        let held = release.clone();
        let app = Router::new()
            .route(
                "/slow",
                get(move || {
                    let held = held.clone();
                    async move {
                        held.notified().await;
                        "done"
                    }
                }),
            )
            .route("/fast", get(|| async { "fast" }))
            .route("/health", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(admission.clone(), admit));
        let call = |path: &str| {
            let app = app.clone();
            let req = Request::get(path).body(Body::empty()).unwrap();
            tokio::spawn(async move { app.oneshot(req).await.unwrap() })
        };
        let until = |n: usize| {
            let admission = admission.clone();
            async move {
                for _ in 0..200 {
                    if admission.waiting() == n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                panic!("waiting stayed {} (expected {n})", admission.waiting());
            }
        };

        let first = call("/slow");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = call("/fast");
        until(1).await;
        let third = call("/fast").await.unwrap();
        assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(third.headers()["retry-after"], "1");
        assert_eq!(call("/health").await.unwrap().status(), StatusCode::OK);
        assert!(
            !second.is_finished(),
            "the queued request ran beside the one holding the turn"
        );

        release.notify_one();
        assert_eq!(first.await.unwrap().status(), StatusCode::OK);
        assert_eq!(second.await.unwrap().status(), StatusCode::OK);
        until(0).await;

        // A waiting request whose client went away leaves the queue.
        let holder = call("/slow");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let gone = call("/fast");
        until(1).await;
        gone.abort();
        until(0).await;
        let next = call("/fast");
        until(1).await;
        release.notify_one();
        assert_eq!(holder.await.unwrap().status(), StatusCode::OK);
        assert_eq!(next.await.unwrap().status(), StatusCode::OK);
    }
}
