//! Berth's own PostgreSQL database: dumped by the host's `pg_dump` (custom
//! format) into the same compressed multipart stream as a service's dump, and
//! restored by `berth admin restore-database` (docs/OPERATIONS.md), which needs
//! nothing but the bucket: the destination settings live in the database being
//! restored. Connection details reach the programs through libpq's environment
//! variables, never their argument vectors (which other local users can read).

use super::s3;
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWrite};

/// libpq environment variables for a `postgres://` URL.
pub fn libpq_env(url: &str) -> Result<Vec<(&'static str, String)>, String> {
    let u = url::Url::parse(url).map_err(|e| format!("DATABASE_URL is not a URL: {e}"))?;
    if !matches!(u.scheme(), "postgres" | "postgresql") {
        return Err("DATABASE_URL must be a postgres:// URL".into());
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let mut env = Vec::new();
    if let Some(h) = u.host_str() {
        env.push(("PGHOST", h.trim_start_matches('[').trim_end_matches(']').to_owned()));
    }
    if let Some(p) = u.port() {
        env.push(("PGPORT", p.to_string()));
    }
    if !u.username().is_empty() {
        env.push(("PGUSER", decode(u.username())));
    }
    if let Some(p) = u.password() {
        env.push(("PGPASSWORD", decode(p)));
    }
    let db = u.path().trim_start_matches('/');
    if !db.is_empty() {
        env.push(("PGDATABASE", decode(db)));
    }
    for (k, v) in u.query_pairs() {
        match k.as_ref() {
            "sslmode" => env.push(("PGSSLMODE", v.into_owned())),
            "host" => env.push(("PGHOST", v.into_owned())),
            "port" => env.push(("PGPORT", v.into_owned())),
            "user" => env.push(("PGUSER", v.into_owned())),
            "password" => env.push(("PGPASSWORD", v.into_owned())),
            "dbname" => env.push(("PGDATABASE", v.into_owned())),
            _ => {}
        }
    }
    Ok(env)
}

fn command(program: &str, url: &str) -> Result<tokio::process::Command, String> {
    let mut cmd = tokio::process::Command::new(program);
    // Only what libpq needs: nothing of Berth's own environment (its secret key).
    cmd.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in libpq_env(url)? {
        cmd.env(k, v);
    }
    cmd.kill_on_drop(true);
    Ok(cmd)
}

/// Reads the child's standard error to its end, beside whatever else runs (a
/// pipe left unread would block the program once full), and gives back its last
/// three lines.
fn stderr_tail(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_end(&mut buf).await;
        }
        let s = String::from_utf8_lossy(&buf);
        let lines: Vec<&str> = s.trim().lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    })
}

/// Dumps Berth's database into `sink` (custom format, uncompressed: the stream
/// is compressed on its way to S3).
pub async fn dump(pg_dump: &str, url: &str, sink: &mut (dyn AsyncWrite + Unpin + Send)) -> Result<(), String> {
    let mut cmd = command(pg_dump, url)?;
    cmd.args(["--format=custom", "--compress=0", "--no-password"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {pg_dump}: {e}"))?;
    let mut out = child.stdout.take().expect("stdout is piped");
    let tail = stderr_tail(&mut child);
    let copied = tokio::io::copy(&mut out, sink).await;
    let status = child.wait().await.map_err(|e| format!("waiting for {pg_dump}: {e}"))?;
    let tail = tail.await.unwrap_or_default();
    if !status.success() {
        return Err(format!("{pg_dump} failed ({status}): {tail}"));
    }
    copied.map_err(|e| format!("streaming the dump: {e}"))?;
    tokio::io::AsyncWriteExt::shutdown(sink)
        .await
        .map_err(|e| format!("streaming the dump: {e}"))?;
    Ok(())
}

/// Restores a backup object into the database at `url` (which should be empty,
/// or is cleaned object by object): download, decompress, `pg_restore`.
pub async fn restore(pg_restore: &str, url: &str, target: &s3::Target, key: &str) -> Result<u64, String> {
    let body = s3::download(target, key).await?;
    let mut gunzip = async_compression::tokio::bufread::GzipDecoder::new(tokio::io::BufReader::new(body));
    let mut cmd = command(pg_restore, url)?;
    let db = libpq_env(url)?
        .into_iter()
        .rev()
        .find(|(k, _)| *k == "PGDATABASE")
        .map(|(_, v)| v)
        .unwrap_or_else(|| "postgres".into());
    cmd.args([
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        "--no-password",
        "-d",
        &db,
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {pg_restore}: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let tail = stderr_tail(&mut child);
    let fed = tokio::io::copy(&mut gunzip, &mut stdin).await;
    if let Err(e) = &fed {
        // Still running: the backup's side failed (S3, gunzip). Kill it before
        // it sees a clean end of input, so its transaction never commits.
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill().await;
            return Err(format!("reading the backup: {e}"));
        }
    }
    drop(stdin);
    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for {pg_restore}: {e}"))?;
    let tail = tail.await.unwrap_or_default();
    if !status.success() {
        return Err(format!("{pg_restore} failed ({status}): {tail}"));
    }
    fed.map_err(|e| format!("{pg_restore} stopped reading the backup: {e}"))
}

/// Restores a dump file (custom format, [`dump`]'s) as the whole of the
/// database's `public` schema, in one transaction: `public` is dropped and made
/// again, then `pg_restore`'s SQL runs through `psql`. Objects a failed
/// upgrade's migration added go too (`pg_restore --clean` would keep what the
/// dump does not name), and until the commit every other session sees the
/// database as it was.
pub async fn restore_file(pg_restore: &str, url: &str, file: &std::path::Path) -> Result<(), String> {
    let psql = sibling(pg_restore, "psql");
    let mut sql = tokio::process::Command::new(pg_restore);
    sql.env_clear()
        .args(["--no-owner", "--no-privileges", "--exit-on-error", "-f", "-"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Ok(path) = std::env::var("PATH") {
        sql.env("PATH", path);
    }
    let mut reader = sql.spawn().map_err(|e| format!("cannot run {pg_restore}: {e}"))?;
    let reader_tail = stderr_tail(&mut reader);
    let out = reader.stdout.take().expect("stdout is piped");
    let mut cmd = command(&psql, url)?;
    cmd.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "--no-password",
        "-f",
        "-",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut writer = cmd.spawn().map_err(|e| format!("cannot run {psql}: {e}"))?;
    let writer_tail = stderr_tail(&mut writer);
    let mut stdin = writer.stdin.take().expect("stdin is piped");
    let fed = async {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        stdin.write_all(RESTORE_PREFIX.as_bytes()).await?;
        // The dump's preamble, but for `SET transaction_timeout` (pg_dump 17
        // writes it; a server before 17 refuses it: the prefix sets it there).
        let mut out = tokio::io::BufReader::new(out);
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).await? == 0 {
                break;
            }
            let t = line.trim_start();
            let preamble = t.is_empty()
                || t.starts_with("--")
                || t.starts_with("\\restrict ")
                || t.starts_with("SET ")
                || t.starts_with("SELECT pg_catalog.set_config");
            if !t.starts_with("SET transaction_timeout") {
                stdin.write_all(line.as_bytes()).await?;
            }
            if !preamble {
                break;
            }
        }
        tokio::io::copy(&mut out, &mut stdin).await?;
        stdin.shutdown().await
    }
    .await;
    let read = reader
        .wait()
        .await
        .map_err(|e| format!("waiting for {pg_restore}: {e}"))?;
    if !read.success() || fed.is_err() {
        // psql must not see a clean end of a partial script: no commit.
        let _ = writer.kill().await;
        let tail = reader_tail.await.unwrap_or_default();
        return Err(format!("{pg_restore} failed ({read}): {tail}"));
    }
    drop(stdin);
    let status = writer.wait().await.map_err(|e| format!("waiting for {psql}: {e}"))?;
    let tail = writer_tail.await.unwrap_or_default();
    if !status.success() {
        return Err(format!("{psql} failed ({status}): {tail}"));
    }
    Ok(())
}

/// What runs before the dump's SQL in [`restore_file`]'s transaction: the
/// schema emptied, and the settings a server of any version takes.
const RESTORE_PREFIX: &str = "SET client_min_messages = warning;
SELECT current_setting('server_version_num')::int >= 170000 AS berth_has_transaction_timeout \\gset
\\if :berth_has_transaction_timeout
SET transaction_timeout = 0;
\\endif
DROP SCHEMA IF EXISTS public CASCADE;
CREATE SCHEMA public;
";

/// `program` beside `pg_restore` (the same client installation), or on PATH.
fn sibling(pg_restore: &str, program: &str) -> String {
    match pg_restore.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{program}"),
        None => program.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_libpq_variables() {
        let env = libpq_env("postgres://berth:p%40ss@db.internal:6543/berth?sslmode=require").unwrap();
        assert_eq!(
            env,
            vec![
                ("PGHOST", "db.internal".to_owned()),
                ("PGPORT", "6543".to_owned()),
                ("PGUSER", "berth".to_owned()),
                ("PGPASSWORD", "p@ss".to_owned()),
                ("PGDATABASE", "berth".to_owned()),
                ("PGSSLMODE", "require".to_owned()),
            ]
        );
        assert!(libpq_env("mysql://x@y/z").is_err());
    }
}
