//! Deployment logs. Each line of clone, build and start is appended to the
//! deployment's log file (its path is derived from IDs only) and published on a
//! Redis channel, numbered (one message per batch of lines). A follower subscribes first, replays the file, then
//! forwards live lines it has not replayed: no gap, no duplicate, and any server
//! replica can serve any deployment's live log.

use crate::db::schema::deployments;
use crate::ids::{AppId, DeploymentId};
use crate::Engine;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures::StreamExt;
use lifecycle::{DeploymentStatus as Status, Lifecycle};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// What a follower receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogEvent {
    /// Line number `seq` (1-based) of the log.
    Line { seq: u64, text: String },
    /// The deployment's work is over (it went live, failed or was cancelled); nothing follows.
    End { status: Status },
}

fn channel(engine: &Engine, id: DeploymentId) -> String {
    engine.kv.key(&format!("logs:deployment:{}", id.0.simple()))
}

/// The marker line that ends every finished log (replays recognise it).
fn end_line(status: Status) -> String {
    format!("==> deployment {}", status.as_str())
}

fn parse_end(line: &str) -> Option<Status> {
    let s = line.strip_prefix("==> deployment ")?;
    Status::parse(s).filter(|s| s.is_finished())
}

/// The deployment's status, unscoped (the caller has checked access).
async fn status_of(engine: &Engine, id: DeploymentId) -> Result<Option<Status>, crate::error::StoreError> {
    let mut conn = engine.db.get().await?;
    Ok(deployments::table
        .find(id)
        .select(deployments::status)
        .first(&mut conn)
        .await
        .optional()?)
}

enum Msg {
    Line(String),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The writer side, held by the worker running the deployment. Lines are queued
/// to a task that batches file appends and PUBLISHes (one pipeline per batch), so
/// a chatty build never waits on Redis.
pub struct DeployLog {
    tx: mpsc::UnboundedSender<Msg>,
    task: tokio::task::JoinHandle<()>,
}

impl DeployLog {
    pub async fn open(engine: &Engine, app: AppId, id: DeploymentId) -> std::io::Result<Self> {
        let path = engine.deploy.deployment_log(app.0, id.0);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        // Resuming appends: count the lines already there so numbering continues
        // (streamed: the file can be as big as the cap).
        let (existing, size) = count_lines(&path).await;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let cap = Cap {
            limit: engine.deploy.log_cap_bytes,
            written: size,
            noted: size > engine.deploy.log_cap_bytes,
        };
        let task = tokio::spawn(writer(engine.clone(), channel(engine, id), file, existing, cap, rx));
        Ok(Self { tx, task })
    }

    /// Appends a line (or several, split on newlines), each cut at
    /// [`crate::lines::MAX_LINE`].
    pub fn line(&self, text: impl AsRef<str>) {
        for l in text.as_ref().split('\n') {
            let l = l.strip_suffix('\r').unwrap_or(l);
            let _ = self.tx.send(Msg::Line(crate::lines::capped(l).into_owned()));
        }
    }

    /// Appends output of a tool (git, the build, the container), indented so it can
    /// never pass for one of Berth's own `==>` lines.
    pub fn output(&self, text: impl AsRef<str>) {
        for l in text.as_ref().split('\n') {
            let l = l.strip_suffix('\r').unwrap_or(l);
            let _ = self.tx.send(Msg::Line(format!("  {}", crate::lines::capped(l))));
        }
    }

    /// Waits until everything sent so far is on disk and published.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Writes the end marker and waits for the writer to finish.
    pub async fn finish(self, status: Status) {
        self.line(end_line(status));
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// Lines and bytes already in a log file, read in pieces.
async fn count_lines(path: &std::path::Path) -> (u64, u64) {
    use tokio::io::AsyncReadExt;
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return (0, 0);
    };
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = f.read(&mut buf).await {
        if n == 0 {
            break;
        }
        bytes += n as u64;
        lines += buf[..n].iter().filter(|c| **c == b'\n').count() as u64;
    }
    (lines, bytes)
}

/// The per-deployment size cap (`BERTH_LOG_CAP_MB`).
struct Cap {
    limit: u64,
    written: u64,
    noted: bool,
}

impl Cap {
    /// Whether `line` is kept; past the limit only Berth's own lines are (the
    /// end marker among them), after one note.
    fn admit(&mut self, line: &str, out: &mut Vec<String>) {
        if self.written + (line.len() as u64) < self.limit || line.starts_with("==> ") {
            self.written += line.len() as u64 + 1;
            out.push(line.to_owned());
        } else if !self.noted {
            self.noted = true;
            let note = format!(
                "==> the log reached its cap of {} MB (BERTH_LOG_CAP_MB); further output is not kept",
                self.limit / (1024 * 1024)
            );
            self.written += note.len() as u64 + 1;
            out.push(note);
        }
    }
}

async fn writer(
    engine: Engine,
    channel: String,
    file: tokio::fs::File,
    mut seq: u64,
    mut cap: Cap,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) {
    let mut file = tokio::io::BufWriter::new(file);
    let mut batch: Vec<Msg> = Vec::with_capacity(256);
    let mut kept = Vec::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        let mut waiters = Vec::new();
        let mut events = Vec::with_capacity(batch.len());
        for m in batch.drain(..) {
            match m {
                Msg::Line(text) => {
                    cap.admit(&text, &mut kept);
                }
                Msg::Flush(w) => waiters.push(w),
            }
        }
        for text in kept.drain(..) {
            seq += 1;
            let _ = file.write_all(text.as_bytes()).await;
            let _ = file.write_all(b"\n").await;
            events.push(LogEvent::Line { seq, text });
        }
        if let Err(e) = file.flush().await {
            tracing::warn!(error = %e, "writing a deployment log");
        }
        // One message per batch: a chatty build costs Redis and every follower a
        // few messages per tick, not one per line (docs/BENCHMARKS.md).
        if !events.is_empty() {
            let payload = serde_json::to_string(&events).expect("serializes");
            match engine.kv.conn().await {
                Ok(mut c) => {
                    if let Err(e) = redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(payload)
                        .query_async::<()>(&mut c)
                        .await
                    {
                        tracing::debug!(error = %e, "publishing log lines");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "publishing log lines"),
            }
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

/// Ends a log no worker is writing (a deployment cancelled while queued, or
/// reaped after its worker died): an optional explanation, then the end marker.
pub async fn close(engine: &Engine, app: AppId, id: DeploymentId, why: Option<&str>, status: Status) {
    match DeployLog::open(engine, app, id).await {
        Ok(log) => {
            if let Some(why) = why {
                log.line(why);
            }
            log.finish(status).await;
        }
        Err(e) => tracing::warn!(error = %e, deployment.id = %id, "cannot open deployment log"),
    }
}

pub fn log_path(engine: &Engine, app: AppId, id: DeploymentId) -> PathBuf {
    engine.deploy.deployment_log(app.0, id.0)
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Store(#[from] crate::error::StoreError),
}

impl crate::Classify for FollowError {
    fn kind(&self) -> crate::ErrorKind {
        match self {
            FollowError::Store(e) => e.kind(),
        }
    }
}

/// Follows a deployment's log from the first line: replay, then live lines, then
/// [`LogEvent::End`] once the deployment is finished. The caller has checked access.
pub async fn follow(
    engine: &Engine,
    app: AppId,
    id: DeploymentId,
) -> Result<futures::stream::BoxStream<'static, LogEvent>, FollowError> {
    // Subscribe before reading the file, so no line falls between the two.
    let mut sub = engine.kv.hub().subscribe(&channel(engine, id)).await?;
    let path = log_path(engine, app, id);
    let engine = engine.clone();
    let stream = async_stream(move |tx: mpsc::Sender<LogEvent>| async move {
        let mut at = Position::default();
        if replay(&path, &mut at, &tx).await.is_break() {
            return;
        }
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), sub.rx.recv()).await;
            match next {
                Ok(Ok(payload)) => {
                    let Ok(events) = serde_json::from_str::<Vec<LogEvent>>(&payload) else {
                        continue;
                    };
                    for event in events {
                        let LogEvent::Line { seq, text } = event else { continue };
                        if seq <= at.seen {
                            continue;
                        }
                        if seq > at.seen + 1 {
                            // A gap (this follower lagged): the file has it.
                            if replay(&path, &mut at, &tx).await.is_break() {
                                return;
                            }
                            if seq <= at.seen {
                                continue;
                            }
                        }
                        // Sent live: the file offset moves past it too.
                        at.seen = seq;
                        at.offset += text.len() as u64 + 1;
                        let end = parse_end(&text);
                        if tx.send(LogEvent::Line { seq, text }).await.is_err() {
                            return;
                        }
                        if let Some(status) = end {
                            let _ = tx.send(LogEvent::End { status }).await;
                            return;
                        }
                    }
                }
                // Fell behind the shared backlog: catch up from the file.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    if replay(&path, &mut at, &tx).await.is_break() {
                        return;
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
                Err(_) => {
                    // Quiet for a while: the deployment may have ended while the
                    // log had no marker (it never started), or its last lines
                    // went by during a reconnect: the file and the row say.
                    if replay(&path, &mut at, &tx).await.is_break() {
                        return;
                    }
                    if let Ok(Some(status)) = status_of(&engine, id).await {
                        if status.is_finished() && at.seen == 0 {
                            let _ = tx.send(LogEvent::End { status }).await;
                            return;
                        }
                    }
                }
            }
        }
    });
    Ok(stream)
}

/// Where a follower is in the log file: lines sent, and the bytes they took.
#[derive(Default)]
struct Position {
    seen: u64,
    offset: u64,
}

/// Sends the file's complete lines after the position (and moves it); `Break`
/// when the follower is gone or the end marker was sent. Reads from the byte
/// offset already sent, so catching up costs what is new, not the whole file.
async fn replay(path: &std::path::Path, at: &mut Position, tx: &mpsc::Sender<LogEvent>) -> std::ops::ControlFlow<()> {
    use std::ops::ControlFlow::{Break, Continue};
    use tokio::io::AsyncSeekExt;
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return Continue(());
    };
    if f.seek(std::io::SeekFrom::Start(at.offset)).await.is_err() {
        return Continue(());
    }
    let mut reader = tokio::io::BufReader::new(f);
    let mut buf = Vec::new();
    while let Ok(Some((text, used, complete))) = capped_line(&mut reader, &mut buf).await {
        if !complete {
            // Still being written: it comes live, or at the next catch-up.
            break;
        }
        at.seen += 1;
        at.offset += used;
        let end = parse_end(&text);
        if tx.send(LogEvent::Line { seq: at.seen, text }).await.is_err() {
            return Break(());
        }
        if let Some(status) = end {
            let _ = tx.send(LogEvent::End { status }).await;
            return Break(());
        }
    }
    Continue(())
}

/// The next line of `r` without its `\n`, at most [`crate::lines::MAX_LINE`]
/// bytes of it kept (a log written before lines were capped may hold a huge one:
/// replaying it costs the cap, not the line); with the bytes it took and
/// whether it was complete (the writer may be in the middle of one).
async fn capped_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(String, u64, bool)>> {
    buf.clear();
    let mut cut = 0usize;
    let mut used = 0u64;
    let mut complete = false;
    let mut take = |buf: &mut Vec<u8>, bytes: &[u8]| {
        let keep = bytes.len().min(crate::lines::MAX_LINE.saturating_sub(buf.len()));
        buf.extend_from_slice(&bytes[..keep]);
        cut += bytes.len() - keep;
    };
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            if used == 0 {
                return Ok(None);
            }
            break;
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                take(buf, &chunk[..i]);
                r.consume(i + 1);
                used += i as u64 + 1;
                complete = true;
                break;
            }
            None => {
                let n = chunk.len();
                take(buf, chunk);
                r.consume(n);
                used += n as u64;
            }
        }
    }
    let mut text = String::from_utf8_lossy(buf).into_owned();
    if cut > 0 {
        text.push_str(&format!(" … [{cut} bytes cut]"));
    }
    Ok(Some((text, used, complete)))
}

/// A stream fed by a spawned producer (ends when the producer returns or the
/// stream is dropped).
fn async_stream<F, Fut>(producer: F) -> futures::stream::BoxStream<'static, LogEvent>
where
    F: FnOnce(mpsc::Sender<LogEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(1024);
    let handle = tokio::spawn(producer(tx));
    let guard = AbortOnDrop(handle);
    futures::stream::unfold((rx, guard), |(mut rx, g)| async move {
        rx.recv().await.map(|e| (e, (rx, g)))
    })
    .boxed()
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_marker_round_trips_only_for_terminal_states() {
        assert_eq!(parse_end(&end_line(Status::Running)), Some(Status::Running));
        assert_eq!(parse_end(&end_line(Status::Failed)), Some(Status::Failed));
        assert_eq!(parse_end("==> deployment building"), None);
        assert_eq!(parse_end("deployment running"), None);
    }
}
