//! The recorded history: one JSON object per line for every operation a
//! client invokes and its completion (`ok`, `fail` or `info`, as in
//! Jepsen), and for every fault the nemesis applies and heals.
//!
//! - `ok`: the operation happened (a transfer COMMITTED, an audit's reads
//!   are from a committed transaction).
//! - `fail`: it certainly did not happen (ABORTED, or Commit never sent).
//! - `info`: unknown (the call died or timed out); the checker finds out.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Type {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One balance change of a transfer: `delta` on `account` of `participant`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Write {
    pub participant: String,
    pub account: i64,
    pub delta: i64,
}

/// One balance an audit read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Read {
    pub participant: String,
    pub account: i64,
    pub balance: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the run started.
    pub time_ms: u64,
    /// `client-N` or `nemesis`.
    pub process: String,
    #[serde(rename = "type")]
    pub kind: Type,
    /// `transfer`, `audit`, or the fault's kind.
    pub f: String,
    /// The client's id for the operation (unique in the run; transfers
    /// write it into their ledger rows).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// `submit` or `interactive`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// tandem's transaction id, once known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub txn: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<Write>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<Read>,
    /// Why it failed or is unknown, or what the nemesis did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Event {
    pub fn new(process: &str, kind: Type, f: &str) -> Self {
        Self {
            time_ms: 0,
            process: process.to_owned(),
            kind,
            f: f.to_owned(),
            op: String::new(),
            mode: String::new(),
            txn: String::new(),
            writes: Vec::new(),
            reads: Vec::new(),
            detail: String::new(),
        }
    }
}

/// The history being written to its file, line by line. Cheap to clone.
#[derive(Clone)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
    start: Instant,
}

struct Inner {
    file: BufWriter<File>,
    error: Option<std::io::Error>,
}

impl History {
    pub fn create(path: &Path, start: Instant) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("cannot create the history {}", path.display()))?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                file: BufWriter::new(file),
                error: None,
            })),
            start,
        })
    }

    /// Stamps `event` with the time and records it.
    pub fn record(&self, mut event: Event) {
        event.time_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let written = serde_json::to_writer(&mut inner.file, &event)
            .map_err(std::io::Error::from)
            .and_then(|()| inner.file.write_all(b"\n"));
        if let Err(err) = written {
            inner.error.get_or_insert(err);
        }
    }

    /// Flushes the file; the checker reads it back with [`read`].
    pub fn flush(&self) -> Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.file.flush()?;
        match inner.error.take() {
            Some(err) => Err(err).context("writing the history failed"),
            None => Ok(()),
        }
    }
}

/// Reads a history file back.
pub fn read(path: &Path) -> Result<Vec<Event>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).with_context(|| format!("{}:{}: bad event", path.display(), i + 1)))
        .collect()
}
