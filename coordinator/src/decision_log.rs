//! The decision log: where a COMMIT decision becomes durable before any
//! participant hears of it.
//!
//! Presumed abort needs only COMMIT records (a gtrid without one aborted)
//! and END records (every participant confirmed phase 2). [`FileLog`]
//! appends them to `decisions.log` on the data dir with **group commit**: a
//! writer thread takes every record that arrived while the previous fsync
//! ran, writes them together and covers them with one `fdatasync`.
//!
//! Record framing: `len: u32 LE | crc32(payload): u32 LE | payload`, with
//! payload `kind: u8 | gtrid_len: u8 | gtrid | n: u8 | (name_len: u8 | name)*`
//! (participants only in COMMIT records).

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use thiserror::Error;
use tokio::sync::oneshot;
use tracing::error;

pub const FILE_NAME: &str = "decisions.log";

const KIND_COMMIT: u8 = 1;
const KIND_END: u8 = 2;

#[derive(Debug, Error)]
pub enum LogError {
    #[error("decision log I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("decision log writer stopped")]
    Stopped,
    #[error("{0}")]
    Invalid(String),
}

/// A durable store of COMMIT decisions. Implementations must make a COMMIT
/// record durable before the returned future resolves `Ok`.
pub trait DecisionLog: Send + Sync + 'static {
    fn commit(
        &self,
        gtrid: &str,
        participants: &[String],
    ) -> Pin<Box<dyn Future<Output = Result<(), LogError>> + Send + 'static>>;

    /// Notes that every participant confirmed phase 2. Needs no fsync: a
    /// lost END only means phase 2 is re-driven once more.
    fn end(&self, gtrid: &str);
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Commit { gtrid: String, participants: Vec<String> },
    End { gtrid: String },
}

impl Record {
    /// Appends the framed record to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), LogError> {
        let mut payload = Vec::with_capacity(64);
        let (kind, gtrid, participants): (u8, &str, &[String]) = match self {
            Record::Commit { gtrid, participants } => (KIND_COMMIT, gtrid, participants),
            Record::End { gtrid } => (KIND_END, gtrid, &[]),
        };
        payload.push(kind);
        push_str(&mut payload, gtrid)?;
        if kind == KIND_COMMIT {
            let n = u8::try_from(participants.len())
                .map_err(|_| LogError::Invalid("more than 255 participants in one transaction".to_owned()))?;
            payload.push(n);
            for p in participants {
                push_str(&mut payload, p)?;
            }
        }
        let len = u32::try_from(payload.len()).map_err(|_| LogError::Invalid("record too large".to_owned()))?;
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        buf.extend_from_slice(&payload);
        Ok(())
    }

    /// Decodes one framed record from the front of `buf`: the record and
    /// its framed length, `None` if `buf` ends before the record does, or an
    /// error if the checksum or contents are wrong.
    pub fn decode(buf: &[u8]) -> Result<Option<(Record, usize)>, LogError> {
        let Some(header) = buf.get(..8) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = buf.get(8..8 + len) else {
            return Ok(None);
        };
        if crc32fast::hash(payload) != crc {
            return Err(LogError::Invalid("checksum mismatch".to_owned()));
        }
        let mut r = Reader(payload);
        let kind = r.u8()?;
        let gtrid = r.str()?;
        let record = match kind {
            KIND_COMMIT => {
                let n = r.u8()?;
                let participants = (0..n).map(|_| r.str()).collect::<Result<_, _>>()?;
                Record::Commit { gtrid, participants }
            }
            KIND_END => Record::End { gtrid },
            other => return Err(LogError::Invalid(format!("unknown record kind {other}"))),
        };
        if !r.0.is_empty() {
            return Err(LogError::Invalid("trailing bytes in record".to_owned()));
        }
        Ok(Some((record, 8 + len)))
    }
}

fn push_str(buf: &mut Vec<u8>, s: &str) -> Result<(), LogError> {
    let len = u8::try_from(s.len()).map_err(|_| LogError::Invalid(format!("{s:?} is longer than 255 bytes")))?;
    buf.push(len);
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, LogError> {
        let (&b, rest) = self
            .0
            .split_first()
            .ok_or_else(|| LogError::Invalid("truncated record".to_owned()))?;
        self.0 = rest;
        Ok(b)
    }

    fn str(&mut self) -> Result<String, LogError> {
        let len = self.u8()? as usize;
        if self.0.len() < len {
            return Err(LogError::Invalid("truncated record".to_owned()));
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(s.to_vec()).map_err(|_| LogError::Invalid("non-UTF-8 id in record".to_owned()))
    }
}

struct Pending {
    record: Record,
    /// `Some` for records whose writer waits for durability.
    done: Option<oneshot::Sender<Result<(), LogError>>>,
}

/// The decision log in a file, with group commit on a dedicated thread.
pub struct FileLog {
    tx: mpsc::Sender<Pending>,
    syncs: Arc<AtomicU64>,
}

impl FileLog {
    /// Opens (creating) `decisions.log` in `dir` for appending.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(FILE_NAME);
        let io = |source| LogError::Io {
            path: path.clone(),
            source,
        };
        let existed = path.exists();
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        if !existed {
            // Make the new file's directory entry durable too.
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        let (tx, rx) = mpsc::channel();
        let syncs = Arc::new(AtomicU64::new(0));
        let writer_syncs = Arc::clone(&syncs);
        std::thread::Builder::new()
            .name("decision-log".to_owned())
            .spawn(move || write_loop(file, path, rx, writer_syncs))
            .map_err(|source| LogError::Io {
                path: dir.join(FILE_NAME),
                source,
            })?;
        Ok(Self { tx, syncs })
    }

    /// How many fsyncs the log has done (for tests and metrics).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

impl DecisionLog for FileLog {
    fn commit(
        &self,
        gtrid: &str,
        participants: &[String],
    ) -> Pin<Box<dyn Future<Output = Result<(), LogError>> + Send + 'static>> {
        let (done, rx) = oneshot::channel();
        let sent = self.tx.send(Pending {
            record: Record::Commit {
                gtrid: gtrid.to_owned(),
                participants: participants.to_vec(),
            },
            done: Some(done),
        });
        Box::pin(async move {
            sent.map_err(|_| LogError::Stopped)?;
            rx.await.map_err(|_| LogError::Stopped)?
        })
    }

    fn end(&self, gtrid: &str) {
        let _ = self.tx.send(Pending {
            record: Record::End {
                gtrid: gtrid.to_owned(),
            },
            done: None,
        });
    }
}

fn write_loop(mut file: File, path: PathBuf, rx: mpsc::Receiver<Pending>, syncs: Arc<AtomicU64>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    // Block for the first record, then take everything that queued up
    // meanwhile: one write and one fsync for the whole group.
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        group.extend(rx.try_iter());
        buf.clear();
        let mut waiters = Vec::new();
        for pending in group {
            match pending.record.encode(&mut buf) {
                Ok(()) => waiters.extend(pending.done),
                Err(err) => {
                    if let Some(done) = pending.done {
                        let _ = done.send(Err(err));
                    }
                }
            }
        }
        let durable = !waiters.is_empty();
        let result = file
            .write_all(&buf)
            .and_then(|()| if durable { file.sync_data() } else { Ok(()) });
        if let Err(err) = result {
            // After a failed write or fsync the file's contents are unknown
            // (a COMMIT may or may not be on disk), so neither answer is
            // safe to give: stop the process, recovery sorts it out.
            error!(path = %path.display(), error = %err, "decision log write failed; aborting the coordinator");
            std::process::abort();
        }
        if durable {
            syncs.fetch_add(1, Ordering::Relaxed);
        }
        for done in waiters {
            let _ = done.send(Ok(()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(g: &str) -> Record {
        Record::Commit {
            gtrid: g.to_owned(),
            participants: vec!["orders".to_owned(), "inventory".to_owned()],
        }
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        commit("tc-1-1").encode(&mut buf).unwrap();
        Record::End { gtrid: "tc-1-1".into() }.encode(&mut buf).unwrap();
        let (a, n) = Record::decode(&buf).unwrap().unwrap();
        assert_eq!(a, commit("tc-1-1"));
        let (b, m) = Record::decode(&buf[n..]).unwrap().unwrap();
        assert_eq!(b, Record::End { gtrid: "tc-1-1".into() });
        assert_eq!(n + m, buf.len());
    }

    #[test]
    fn a_torn_record_is_incomplete_and_a_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        commit("tc-1-7").encode(&mut buf).unwrap();
        for cut in 0..buf.len() {
            assert!(Record::decode(&buf[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        for i in 8..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(Record::decode(&bad).is_err(), "flip at {i}");
        }
    }

    #[tokio::test]
    async fn group_commit_covers_concurrent_writers_with_few_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileLog::open(dir.path()).unwrap();
        let writers = 200;
        // Every record is queued before any is awaited, as when many
        // transactions decide at once.
        let pending: Vec<_> = (0..writers)
            .map(|i| log.commit(&format!("tc-1-{i}"), &["a".to_owned(), "b".to_owned()]))
            .collect();
        for result in futures::future::join_all(pending).await {
            result.unwrap();
        }
        let syncs = log.syncs();
        assert!(
            syncs >= 1 && syncs <= writers / 2,
            "{syncs} fsyncs for {writers} concurrent commits"
        );
        // Every record is in the file, intact.
        let bytes = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        let mut at = 0;
        let mut count = 0;
        while let Some((_, n)) = Record::decode(&bytes[at..]).unwrap() {
            at += n;
            count += 1;
        }
        assert_eq!((count, at), (writers, bytes.len()));
    }
}
