//! A minimal HTTP/1.0 GET for the admin listeners (metrics, the status
//! page): enough for tests, without an HTTP client crate.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` at `addr`: the status code and the body. The server closes
/// the connection after an HTTP/1.0 answer; all of it must come within
/// 10 s.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .with_context(|| format!("GET {path} at {addr}: no answer within 10 s"))?
        .with_context(|| format!("GET {path} at {addr}"))?;
    let text = String::from_utf8(answer).with_context(|| format!("GET {path} at {addr}: not UTF-8"))?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("GET {path} at {addr}: no header end in {text:?}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("GET {path} at {addr}: no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}
