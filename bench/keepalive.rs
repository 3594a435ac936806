//! A web app as long-running servers are: one process, HTTP/1.1 keep-alive,
//! no process per request (busybox httpd forks one per connection and closes
//! it after each answer). The rollout-tail benchmark deploys it beside busybox
//! httpd; built by `rustc` alone (std only, statically linked) into a
//! `FROM scratch` image, since no image can be pulled.
//!
//! Answers every GET with the container's hostname; listens on port 8080.
//! Stops at once on SIGTERM (the default action: it installs no handler).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn serve(stream: TcpStream, body: &[u8]) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // The request line and headers, up to the blank line; bodies are not
        // expected (GET only), so nothing else is read.
        let (mut close, mut head_only) = (false, false);
        let mut first = true;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if first {
                close = line.trim_end().ends_with("HTTP/1.0");
                // A HEAD's answer has the headers alone (a body would be read as
                // the start of the next answer on this connection).
                head_only = line.starts_with("HEAD ");
                first = false;
            } else if line.to_ascii_lowercase().starts_with("connection:") && line.to_ascii_lowercase().contains("close") {
                close = true;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        out.write_all(head.as_bytes())?;
        if !head_only {
            out.write_all(body)?;
        }
        if close {
            return Ok(());
        }
    }
}

fn main() {
    let body = std::fs::read("/etc/hostname").unwrap_or_else(|_| b"app\n".to_vec());
    let body: &'static [u8] = Box::leak(body.into_boxed_slice());
    let listener = TcpListener::bind("0.0.0.0:8080").expect("listen on 8080");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve(stream, body);
        });
    }
}
