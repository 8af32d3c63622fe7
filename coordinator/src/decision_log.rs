//! The decision log: where a COMMIT decision becomes durable before any
//! participant hears of it, and where a restarted coordinator finds the
//! decisions it must still carry out.
//!
//! Presumed abort needs only COMMIT records (a gtrid without one aborted)
//! and END records (every participant confirmed phase 2). [`FileLog`]
//! appends them to `decisions.log` on the data dir with **group commit**: a
//! writer thread takes every record that arrived while the previous fsync
//! ran, writes them together and covers them with one `fdatasync`.
//!
//! Every write is one **group** and is fsync'd before the next write starts
//! (ENDs wait in memory for the next COMMIT group, or a second), so after a
//! crash, even a power failure, only the last group can be damaged. On open
//! the log is replayed: a damaged last group (never acknowledged) is cut
//! off; a damaged group with a valid one after it is corruption, and opening
//! fails loudly rather than skip a decision.
//!
//! The file is **preallocated**: zeros are written (and synced) ahead of the
//! last group, and groups overwrite them in place. An fsync then writes only
//! the group's blocks; an append would also commit the file's new size to
//! the filesystem journal, which doubles the fsync's time on ext4
//! (docs/BENCHMARKS.md). Zeros after the last group are the log's end.
//!
//! The log is **compacted** at open and whenever it has grown by
//! `compact_after` bytes: it is rewritten (temp file, fsync, rename, fsync
//! of the directory) with the COMMITs still lacking an END, plus the ended
//! ones younger than `retention`. Those are kept because a participant may
//! still ask for them: with the binlog on, MariaDB can lose an acknowledged
//! `XA COMMIT` in a crash and list the branch as prepared again (DESIGN §4).
//! What compaction drops is summed up in FORGOTTEN records (per epoch, the
//! highest sequence number dropped): for a gtrid at or below that mark the
//! log no longer knows whether it committed, and says so ([`Logged`])
//! instead of letting presumed abort guess.
//!
//! Framing: a group is `magic "TDG1" | len: u32 LE | crc32(payload): u32 LE
//! | payload`, the payload a run of records `len: u32 LE | crc32: u32 LE |
//! kind: u8 | body`. A COMMIT's body is `gtrid | n: u8 | name*`, an END's
//! `gtrid | unix_ms: u64 LE`, a FORGOTTEN's `epoch: u64 LE | seq: u64 LE`;
//! strings are `len: u8 | bytes`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::ids;

pub const FILE_NAME: &str = "decisions.log";
const TEMP_NAME: &str = "decisions.log.compacting";

const KIND_COMMIT: u8 = 1;
const KIND_END: u8 = 2;
const KIND_FORGOTTEN: u8 = 3;

/// The file starts `magic | version: u32 LE | base_len: u64 LE | crc32`:
/// the first `base_len` bytes of groups after it were written by compaction
/// and fsync'd before the file was renamed into place, so no crash can tear
/// them; damage there is always corruption.
const FILE_MAGIC: &[u8; 8] = b"TANDEMDL";
const FILE_VERSION: u32 = 1;
const FILE_HEADER: usize = 24;
/// Compaction writes groups of at most this many bytes.
const BASE_GROUP: usize = 16 << 20;
const GROUP_MAGIC: &[u8; 4] = b"TDG1";
const GROUP_HEADER: usize = 12;
/// No group is longer (a compacted log is one group).
const MAX_GROUP: usize = 1 << 30;
/// How long ENDs may wait for a COMMIT group to ride along with.
const END_FLUSH: Duration = Duration::from_secs(1);
/// Zeros written ahead of the log's end at a time (about 10,000
/// transactions' records).
const PREALLOCATE: u64 = 1 << 20;

/// No valid record is longer: kind, a gtrid and 255 names of 255 bytes.
const MAX_PAYLOAD: usize = 3 + 255 + 256 * 255;

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
    #[error(
        "decision log {path} is corrupt: the record at byte {offset} is damaged ({reason}) but valid records \
         follow it; refusing to start rather than lose a decision (restore the file or move it aside knowingly)"
    )]
    Corrupt {
        path: PathBuf,
        offset: usize,
        reason: String,
    },
}

/// A durable store of COMMIT decisions.
pub trait DecisionLog: Send + Sync + 'static {
    /// Appends a COMMIT record; the future resolves `Ok` only once it is
    /// durable.
    fn commit(
        &self,
        gtrid: &str,
        participants: &[String],
    ) -> Pin<Box<dyn Future<Output = Result<(), LogError>> + Send + 'static>>;

    /// Notes that every participant confirmed phase 2. Needs no fsync: a
    /// lost END only means phase 2 is re-driven once more.
    fn end(&self, gtrid: &str);

    /// What the log knows of `gtrid`.
    fn lookup(&self, gtrid: &str) -> Logged;
}

/// What the decision log knows of a gtrid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// A durable COMMIT: not ended yet, or ended within the retention.
    Committed,
    /// No COMMIT: under presumed abort, it aborted (or never existed).
    Absent,
    /// Older than what the log still remembers: it may have committed.
    Forgotten,
}

/// Settings of a [`FileLog`].
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// How long a COMMIT is kept after its END.
    pub retention: Duration,
    /// Compact once the file has grown by this many bytes.
    pub compact_after: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(600),
            compact_after: 16 << 20,
        }
    }
}

/// A COMMIT whose phase 2 was not confirmed everywhere: after a restart
/// the coordinator drives it to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    pub gtrid: String,
    pub participants: Vec<String>,
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Commit {
        gtrid: String,
        participants: Vec<String>,
    },
    End {
        gtrid: String,
        unix_ms: u64,
    },
    /// Ended COMMITs of `epoch` with sequence numbers up to `seq` may have
    /// been dropped by compaction.
    Forgotten {
        epoch: u64,
        seq: u64,
    },
}

impl Record {
    /// Appends the framed record to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), LogError> {
        let mut payload = Vec::with_capacity(64);
        match self {
            Record::Commit { gtrid, participants } => {
                payload.push(KIND_COMMIT);
                push_str(&mut payload, gtrid)?;
                let n = u8::try_from(participants.len())
                    .map_err(|_| LogError::Invalid("more than 255 participants in one transaction".to_owned()))?;
                payload.push(n);
                for p in participants {
                    push_str(&mut payload, p)?;
                }
            }
            Record::End { gtrid, unix_ms } => {
                payload.push(KIND_END);
                push_str(&mut payload, gtrid)?;
                payload.extend_from_slice(&unix_ms.to_le_bytes());
            }
            Record::Forgotten { epoch, seq } => {
                payload.push(KIND_FORGOTTEN);
                payload.extend_from_slice(&epoch.to_le_bytes());
                payload.extend_from_slice(&seq.to_le_bytes());
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
    /// error if the length, checksum or contents are wrong.
    pub fn decode(buf: &[u8]) -> Result<Option<(Record, usize)>, LogError> {
        let Some(header) = buf.get(..8) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_PAYLOAD {
            return Err(LogError::Invalid(format!("impossible record length {len}")));
        }
        let Some(payload) = buf.get(8..8 + len) else {
            return Ok(None);
        };
        if crc32fast::hash(payload) != crc {
            return Err(LogError::Invalid("checksum mismatch".to_owned()));
        }
        let mut r = Reader(payload);
        let record = match r.u8()? {
            KIND_COMMIT => {
                let gtrid = r.str()?;
                let n = r.u8()?;
                let participants = (0..n).map(|_| r.str()).collect::<Result<_, _>>()?;
                Record::Commit { gtrid, participants }
            }
            KIND_END => Record::End {
                gtrid: r.str()?,
                unix_ms: r.u64()?,
            },
            KIND_FORGOTTEN => Record::Forgotten {
                epoch: r.u64()?,
                seq: r.u64()?,
            },
            other => return Err(LogError::Invalid(format!("unknown record kind {other}"))),
        };
        if !r.0.is_empty() {
            return Err(LogError::Invalid("trailing bytes in record".to_owned()));
        }
        Ok(Some((record, 8 + len)))
    }
}

/// Frames already-encoded records as one group.
fn encode_group(records: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(GROUP_MAGIC);
    // A group never reaches 4 GiB: compaction and batches stay far below.
    out.extend_from_slice(&u32::try_from(records.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(records).to_le_bytes());
    out.extend_from_slice(records);
}

/// Decodes the group at the front of `buf`: its records and framed length,
/// `None` if `buf` ends before the group does, or an error if it is damaged.
pub fn decode_group(buf: &[u8]) -> Result<Option<(Vec<Record>, usize)>, LogError> {
    let Some(header) = buf.get(..GROUP_HEADER) else {
        return Ok(None);
    };
    if &header[..4] != GROUP_MAGIC {
        return Err(LogError::Invalid("no group header".to_owned()));
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if len > MAX_GROUP {
        return Err(LogError::Invalid(format!("impossible group length {len}")));
    }
    let Some(payload) = buf.get(GROUP_HEADER..GROUP_HEADER + len) else {
        return Ok(None);
    };
    if crc32fast::hash(payload) != crc {
        return Err(LogError::Invalid("group checksum mismatch".to_owned()));
    }
    let mut records = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        match Record::decode(&payload[at..])? {
            Some((record, n)) => {
                records.push(record);
                at += n;
            }
            None => return Err(LogError::Invalid("record cut short inside a group".to_owned())),
        }
    }
    Ok(Some((records, GROUP_HEADER + len)))
}

fn push_str(buf: &mut Vec<u8>, s: &str) -> Result<(), LogError> {
    let len = u8::try_from(s.len()).map_err(|_| LogError::Invalid(format!("{s:?} is longer than 255 bytes")))?;
    buf.push(len);
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], LogError> {
        if self.0.len() < n {
            return Err(LogError::Invalid("truncated record".to_owned()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, LogError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, LogError> {
        let bytes = self.take(8)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(le))
    }

    fn str(&mut self) -> Result<String, LogError> {
        let len = self.u8()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| LogError::Invalid("non-UTF-8 id in record".to_owned()))
    }
}

/// What the log says, gtrid by gtrid.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Index {
    entries: HashMap<String, Entry>,
    /// Per epoch, the highest sequence number whose ended COMMIT may have
    /// been dropped.
    forgotten: BTreeMap<u64, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Who must still confirm phase 2 (emptied once ended).
    participants: Vec<String>,
    ended_unix_ms: Option<u64>,
}

impl Index {
    /// Applies one record. Idempotent: replaying a record twice changes
    /// nothing, and an END whose COMMIT was compacted away is ignored.
    pub fn apply(&mut self, record: Record) {
        match record {
            Record::Commit { gtrid, participants } => {
                self.entries.entry(gtrid).or_insert(Entry {
                    participants,
                    ended_unix_ms: None,
                });
            }
            Record::End { gtrid, unix_ms } => {
                if let Some(entry) = self.entries.get_mut(&gtrid)
                    && entry.ended_unix_ms.is_none()
                {
                    entry.ended_unix_ms = Some(unix_ms);
                    entry.participants = Vec::new();
                }
            }
            Record::Forgotten { epoch, seq } => self.forget_up_to(epoch, seq),
        }
    }

    pub fn lookup(&self, gtrid: &str) -> Logged {
        if self.entries.contains_key(gtrid) {
            return Logged::Committed;
        }
        match ids::epoch_and_seq(gtrid) {
            Some((epoch, seq)) if self.forgotten.get(&epoch).is_some_and(|&upto| seq <= upto) => Logged::Forgotten,
            _ => Logged::Absent,
        }
    }

    fn forget_up_to(&mut self, epoch: u64, seq: u64) {
        let upto = self.forgotten.entry(epoch).or_insert(0);
        *upto = (*upto).max(seq);
    }

    /// COMMITs without an END, in gtrid order.
    pub fn unfinished(&self) -> Vec<Unfinished> {
        let mut out: Vec<Unfinished> = self
            .entries
            .iter()
            .filter(|(_, e)| e.ended_unix_ms.is_none())
            .map(|(gtrid, e)| Unfinished {
                gtrid: gtrid.clone(),
                participants: e.participants.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.gtrid.cmp(&b.gtrid));
        out
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets COMMITs that ended more than `retention` before `now_ms`,
    /// noting how far it forgot.
    fn expire(&mut self, now_ms: u64, retention: Duration) {
        let keep_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.ended_unix_ms.is_some_and(|at| now_ms.saturating_sub(at) >= keep_ms))
            .map(|(gtrid, _)| gtrid.clone())
            .collect();
        for gtrid in expired {
            self.entries.remove(&gtrid);
            // A gtrid in the log was issued by this coordinator, so it parses.
            if let Some((epoch, seq)) = ids::epoch_and_seq(&gtrid) {
                self.forget_up_to(epoch, seq);
            }
        }
    }

    /// The whole index as records: FORGOTTEN marks, then each COMMIT (and
    /// its END if ended).
    fn encode(&self, buf: &mut Vec<u8>) -> Result<(), LogError> {
        for (&epoch, &seq) in &self.forgotten {
            Record::Forgotten { epoch, seq }.encode(buf)?;
        }
        let mut gtrids: Vec<&String> = self.entries.keys().collect();
        gtrids.sort();
        for gtrid in gtrids {
            let entry = &self.entries[gtrid];
            Record::Commit {
                gtrid: gtrid.clone(),
                participants: entry.participants.clone(),
            }
            .encode(buf)?;
            if let Some(unix_ms) = entry.ended_unix_ms {
                Record::End {
                    gtrid: gtrid.clone(),
                    unix_ms,
                }
                .encode(buf)?;
            }
        }
        Ok(())
    }
}

/// The result of reading a log file.
#[derive(Debug)]
pub struct Replay {
    pub index: Index,
    /// Bytes of valid records; anything after them is a torn tail or the
    /// preallocated zeros.
    pub valid_len: usize,
}

/// Replays a log's bytes. A damaged group past the compacted base with no
/// valid group after it is a torn tail (cut off); anything else damaged is
/// corruption.
pub fn replay(path: &Path, bytes: &[u8]) -> Result<Replay, LogError> {
    let mut index = Index::default();
    if bytes.is_empty() {
        return Ok(Replay { index, valid_len: 0 });
    }
    let corrupt = |offset: usize, reason: String| LogError::Corrupt {
        path: path.to_owned(),
        offset,
        reason,
    };
    let base_end = FILE_HEADER
        + usize::try_from(decode_header(bytes).ok_or_else(|| {
            corrupt(
                0,
                format!("no valid header: not a tandem decision log of version {FILE_VERSION}"),
            )
        })?)
        .unwrap_or(usize::MAX);
    if base_end > bytes.len() {
        return Err(corrupt(FILE_HEADER, "the compacted base is cut short".to_owned()));
    }
    let mut at = FILE_HEADER;
    while at < bytes.len() {
        // The preallocated, never written part.
        if at >= base_end && bytes[at..].iter().all(|&b| b == 0) {
            break;
        }
        let damage = match decode_group(&bytes[at..]) {
            Ok(Some((records, n))) if at >= base_end || at + n <= base_end => {
                for record in records {
                    index.apply(record);
                }
                at += n;
                continue;
            }
            Ok(Some(_)) => "a group crosses the end of the compacted base".to_owned(),
            Ok(None) => "cut short".to_owned(),
            Err(err) => err.to_string(),
        };
        if at < base_end {
            return Err(corrupt(at, format!("{damage}, inside the compacted base")));
        }
        if let Some(next) = (at + 1..bytes.len()).find(|&o| matches!(decode_group(&bytes[o..]), Ok(Some(_)))) {
            return Err(corrupt(at, format!("{damage}; a valid group starts at byte {next}")));
        }
        break;
    }
    Ok(Replay { index, valid_len: at })
}

fn encode_header(base_len: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(FILE_HEADER);
    header.extend_from_slice(FILE_MAGIC);
    header.extend_from_slice(&FILE_VERSION.to_le_bytes());
    header.extend_from_slice(&base_len.to_le_bytes());
    header.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());
    header
}

/// The base length from a valid header.
fn decode_header(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..FILE_HEADER)?;
    let (body, crc) = header.split_at(FILE_HEADER - 4);
    let crc = u32::from_le_bytes(crc.try_into().ok()?);
    if &body[..8] != FILE_MAGIC || crc32fast::hash(body) != crc {
        return None;
    }
    let version = u32::from_le_bytes(body[8..12].try_into().ok()?);
    if version != FILE_VERSION {
        return None;
    }
    Some(u64::from_le_bytes(body[12..20].try_into().ok()?))
}

struct Pending {
    record: Record,
    /// `Some` for records whose writer waits for durability.
    done: Option<oneshot::Sender<Result<(), LogError>>>,
}

/// The decision log in a file, with group commit on a dedicated thread.
pub struct FileLog {
    /// `None` once dropped.
    tx: Option<mpsc::Sender<Pending>>,
    writer: Option<std::thread::JoinHandle<()>>,
    index: Arc<Mutex<Index>>,
    syncs: Arc<AtomicU64>,
    compactions: Arc<AtomicU64>,
}

impl FileLog {
    /// Opens (creating) `decisions.log` in `dir`: replays it, compacts it,
    /// and returns the log with the COMMITs that still need phase 2.
    pub fn open(dir: &Path, options: LogOptions) -> Result<(Self, Vec<Unfinished>), LogError> {
        let path = dir.join(FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(LogError::Io { path, source }),
        };
        let Replay { index, valid_len } = replay(&path, &bytes)?;
        if bytes[valid_len..].iter().any(|&b| b != 0) {
            warn!(
                path = %path.display(),
                offset = valid_len,
                bytes = bytes.len() - valid_len,
                "cutting a torn tail off the decision log (a write interrupted by a crash, never acknowledged)"
            );
        }
        // Nothing expires at open: the time the coordinator was down must
        // not count against the retention, or participants that ask right
        // after the restart would find their answers forgotten.
        let unfinished = index.unfinished();
        info!(
            path = %path.display(),
            decisions = index.len(),
            unfinished = unfinished.len(),
            "decision log replayed"
        );
        let (file, end) = compact(dir, &index)?;
        let index = Arc::new(Mutex::new(index));
        let (tx, rx) = mpsc::channel();
        let syncs = Arc::new(AtomicU64::new(0));
        let compactions = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            dir: dir.to_owned(),
            file,
            end,
            allocated: end + PREALLOCATE,
            options,
            index: Arc::clone(&index),
            syncs: Arc::clone(&syncs),
            compactions: Arc::clone(&compactions),
            grown: 0,
            started: std::time::Instant::now(),
        };
        let writer = std::thread::Builder::new()
            .name("decision-log".to_owned())
            .spawn(move || writer.run(rx))
            .map_err(|source| LogError::Io { path, source })?;
        Ok((
            Self {
                tx: Some(tx),
                writer: Some(writer),
                index,
                syncs,
                compactions,
            },
            unfinished,
        ))
    }

    /// How many fsyncs of COMMIT groups the log has done.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// How many times the log was compacted while running.
    pub fn compactions(&self) -> u64 {
        self.compactions.load(Ordering::Relaxed)
    }

    fn send(&self, pending: Pending) -> Result<(), LogError> {
        let tx = self.tx.as_ref().ok_or(LogError::Stopped)?;
        tx.send(pending).map_err(|_| LogError::Stopped)
    }
}

/// Writes what is queued (ENDs included) before the log goes away.
impl Drop for FileLog {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl DecisionLog for FileLog {
    fn commit(
        &self,
        gtrid: &str,
        participants: &[String],
    ) -> Pin<Box<dyn Future<Output = Result<(), LogError>> + Send + 'static>> {
        let (done, rx) = oneshot::channel();
        let sent = self.send(Pending {
            record: Record::Commit {
                gtrid: gtrid.to_owned(),
                participants: participants.to_vec(),
            },
            done: Some(done),
        });
        Box::pin(async move {
            sent?;
            rx.await.map_err(|_| LogError::Stopped)?
        })
    }

    fn end(&self, gtrid: &str) {
        let _ = self.send(Pending {
            record: Record::End {
                gtrid: gtrid.to_owned(),
                unix_ms: unix_ms_now(),
            },
            done: None,
        });
    }

    fn lookup(&self, gtrid: &str) -> Logged {
        lock(&self.index).lookup(gtrid)
    }
}

struct Writer {
    dir: PathBuf,
    file: File,
    /// Where the next group goes: the end of the valid records.
    end: u64,
    /// The file's length; zeros from `end` to here.
    allocated: u64,
    options: LogOptions,
    /// Updated once records are written (COMMITs once durable).
    index: Arc<Mutex<Index>>,
    syncs: Arc<AtomicU64>,
    compactions: Arc<AtomicU64>,
    /// Bytes appended since the last compaction.
    grown: u64,
    /// Ended COMMITs expire only once the coordinator has been up for the
    /// retention, so every participant had that long to ask after a restart.
    started: std::time::Instant,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Pending>) {
        // ENDs wait here for the next COMMIT group (or END_FLUSH), so every
        // write is fsync'd before the next one starts.
        let mut ends: Vec<Record> = Vec::new();
        // When the oldest waiting END arrived.
        let mut ends_since = std::time::Instant::now();
        loop {
            let first = if ends.is_empty() {
                rx.recv().ok()
            } else {
                match rx.recv_timeout(END_FLUSH.saturating_sub(ends_since.elapsed())) {
                    Ok(pending) => Some(pending),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.write_group(std::mem::take(&mut ends), Vec::new());
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => None,
                }
            };
            let Some(first) = first else { break };
            // Everything that queued up meanwhile: one write, one fsync.
            let mut commits = Vec::new();
            for pending in std::iter::once(first).chain(rx.try_iter()) {
                match pending.done {
                    Some(done) => commits.push((pending.record, done)),
                    None => {
                        if ends.is_empty() {
                            ends_since = std::time::Instant::now();
                        }
                        ends.push(pending.record);
                    }
                }
            }
            if !commits.is_empty() {
                self.write_group(std::mem::take(&mut ends), commits);
            }
        }
        if !ends.is_empty() {
            self.write_group(ends, Vec::new());
        }
    }

    /// Writes one group and fsyncs it, then answers the COMMITs' waiters.
    fn write_group(&mut self, ends: Vec<Record>, commits: Vec<(Record, oneshot::Sender<Result<(), LogError>>)>) {
        let mut records_buf = Vec::with_capacity(64 * (ends.len() + commits.len()));
        let mut records = Vec::with_capacity(ends.len() + commits.len());
        let mut waiters = Vec::with_capacity(commits.len());
        for record in ends {
            if record.encode(&mut records_buf).is_ok() {
                records.push(record);
            }
        }
        for (record, done) in commits {
            match record.encode(&mut records_buf) {
                Ok(()) => {
                    records.push(record);
                    waiters.push(done);
                }
                Err(err) => {
                    let _ = done.send(Err(err));
                }
            }
        }
        if records.is_empty() {
            return;
        }
        let mut buf = Vec::with_capacity(GROUP_HEADER + records_buf.len());
        encode_group(&records_buf, &mut buf);
        let len = buf.len() as u64;
        if self.end + len > self.allocated {
            self.preallocate(len);
        }
        let mut result = self.file.write_all_at(&buf, self.end);
        if !waiters.is_empty() && result.is_ok() {
            // Written, not yet durable. (A crash here keeps the page cache;
            // losing the group takes a power failure.)
            if let Err(injected) = tandem_proto::failpoints::hit_blocking("decision_log::before_fsync") {
                result = Err(std::io::Error::other(injected));
            }
        }
        if let Err(err) = result.and_then(|()| self.file.sync_data()) {
            self.fatal(&err);
        }
        if !waiters.is_empty() {
            self.syncs.fetch_add(1, Ordering::Relaxed);
        }
        {
            let mut index = lock(&self.index);
            for record in records {
                index.apply(record);
            }
        }
        for done in waiters {
            let _ = done.send(Ok(()));
        }
        self.end += len;
        self.grown += len;
        if self.grown >= self.options.compact_after {
            self.compact();
        } else if self.allocated - self.end < PREALLOCATE / 2 {
            // Now, while no COMMIT waits, rather than in a group's path.
            self.preallocate(0);
        }
    }

    /// Writes zeros past the file's end, at least `needed` bytes beyond
    /// `end`, and syncs them with the file's new size.
    fn preallocate(&mut self, needed: u64) {
        let target = (self.end + needed).max(self.allocated) + PREALLOCATE;
        let zeros = vec![0u8; usize::try_from(target - self.allocated).unwrap_or(usize::MAX)];
        if let Err(err) = self
            .file
            .write_all_at(&zeros, self.allocated)
            .and_then(|()| self.file.sync_data())
        {
            self.fatal(&err);
        }
        self.allocated = target;
    }

    fn compact(&mut self) {
        let mut index = lock(&self.index);
        if self.started.elapsed() >= self.options.retention {
            index.expire(unix_ms_now(), self.options.retention);
        }
        match compact(&self.dir, &index) {
            Ok((file, end)) => {
                self.file = file;
                self.end = end;
                self.allocated = end + PREALLOCATE;
                self.grown = 0;
                self.compactions.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                drop(index);
                self.fatal(&err);
            }
        }
    }

    /// After a failed write or fsync the file's contents are unknown (a
    /// COMMIT may or may not be on disk), so neither answer is safe to
    /// give: stop the process; recovery sorts it out.
    fn fatal(&self, err: &dyn std::fmt::Display) -> ! {
        error!(dir = %self.dir.display(), error = %err, "decision log write failed; aborting the coordinator");
        std::process::abort();
    }
}

/// Rewrites the log as `index` says, atomically, with [`PREALLOCATE`]
/// zeros after its records, and returns the new file open for writing and
/// where its records end.
fn compact(dir: &Path, index: &Index) -> Result<(File, u64), LogError> {
    let path = dir.join(FILE_NAME);
    let temp = dir.join(TEMP_NAME);
    let io = |source| LogError::Io {
        path: path.clone(),
        source,
    };
    let mut records = Vec::new();
    index.encode(&mut records)?;
    let mut groups = Vec::with_capacity(GROUP_HEADER + records.len());
    let mut at = 0;
    while at < records.len() {
        // Split at record boundaries.
        let mut end = at;
        while end < records.len() && (end == at || end - at < BASE_GROUP) {
            let len = u32::from_le_bytes([records[end], records[end + 1], records[end + 2], records[end + 3]]);
            end += 8 + len as usize;
        }
        encode_group(&records[at..end], &mut groups);
        at = end;
    }
    let mut buf = encode_header(groups.len() as u64);
    buf.extend_from_slice(&groups);
    let end = buf.len() as u64;
    buf.resize(buf.len() + PREALLOCATE as usize, 0);
    let mut file = File::create(&temp).map_err(io)?;
    file.write_all(&buf).and_then(|()| file.sync_all()).map_err(io)?;
    drop(file);
    std::fs::rename(&temp, &path).map_err(io)?;
    // The rename is durable once the directory is.
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    let file = OpenOptions::new().write(true).open(&path).map_err(io)?;
    Ok((file, end))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

    fn end(g: &str) -> Record {
        Record::End {
            gtrid: g.to_owned(),
            unix_ms: unix_ms_now(),
        }
    }

    /// Each record as a group of its own, as appends leave them.
    fn encode_all(records: &[Record]) -> Vec<u8> {
        let mut buf = Vec::new();
        for r in records {
            let mut one = Vec::new();
            r.encode(&mut one).unwrap();
            encode_group(&one, &mut buf);
        }
        buf
    }

    /// A log file: a header with an empty compacted base, then `groups`.
    fn file_of(groups: &[u8]) -> Vec<u8> {
        let mut file = encode_header(0);
        file.extend_from_slice(groups);
        file
    }

    fn open(dir: &Path) -> (FileLog, Vec<Unfinished>) {
        FileLog::open(dir, LogOptions::default()).unwrap()
    }

    fn gtrids(unfinished: &[Unfinished]) -> Vec<&str> {
        unfinished.iter().map(|u| u.gtrid.as_str()).collect()
    }

    #[test]
    fn records_round_trip() {
        let records = [commit("tc-1-1"), end("tc-1-1"), Record::Forgotten { epoch: 3, seq: 9 }];
        let mut buf = Vec::new();
        for r in &records {
            r.encode(&mut buf).unwrap();
        }
        let (a, n) = Record::decode(&buf).unwrap().unwrap();
        assert_eq!(a, records[0]);
        let (b, m) = Record::decode(&buf[n..]).unwrap().unwrap();
        assert_eq!(b, records[1]);
        let (c, o) = Record::decode(&buf[n + m..]).unwrap().unwrap();
        assert_eq!(c, records[2]);
        assert_eq!(n + m + o, buf.len());
        // As one group.
        let mut group = Vec::new();
        encode_group(&buf, &mut group);
        let (decoded, len) = decode_group(&group).unwrap().unwrap();
        assert_eq!((decoded.as_slice(), len), (&records[..], group.len()));
    }

    #[test]
    fn a_torn_record_is_incomplete_and_a_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        commit("tc-1-7").encode(&mut buf).unwrap();
        for cut in 0..buf.len() {
            assert!(Record::decode(&buf[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(!matches!(Record::decode(&bad), Ok(Some(_))), "flip at {i}");
        }
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_possible_point() {
        let records = [commit("tc-1-1"), commit("tc-1-2"), end("tc-1-1"), commit("tc-1-3")];
        let whole = encode_all(&records);
        let last = encode_all(&records[..3]).len();
        for cut in last..whole.len() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(FILE_NAME), file_of(&whole[..cut])).unwrap();
            let (log, unfinished) = open(dir.path());
            assert_eq!(gtrids(&unfinished), ["tc-1-2"], "cut at {cut}");
            assert_eq!(
                (log.lookup("tc-1-1"), log.lookup("tc-1-3")),
                (Logged::Committed, Logged::Absent)
            );
            // The tail is gone from the file, not just skipped: only the
            // preallocated zeros follow the records.
            let bytes = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
            let valid = replay(dir.path(), &bytes).unwrap().valid_len;
            assert!(bytes[valid..].iter().all(|&b| b == 0), "cut at {cut}");
        }
        // Garbage (or zeros from a crash) after the last record is a torn tail too.
        // A group torn while it overwrote the preallocated zeros, too.
        let mut torn_in_place = b"TDG1\x10\0\0\0garb".to_vec();
        torn_in_place.resize(400, 0);
        for junk in [
            vec![0u8; 300],
            vec![0xAB; 5],
            b"TDG1\x10\0\0\0garbage".to_vec(),
            torn_in_place,
        ] {
            let mut bytes = file_of(&whole);
            bytes.extend_from_slice(&junk);
            let r = replay(Path::new("x"), &bytes).unwrap();
            assert_eq!(
                (r.valid_len, r.index.unfinished().len()),
                (FILE_HEADER + whole.len(), 2)
            );
        }
    }

    #[test]
    fn a_damaged_record_in_the_middle_is_a_loud_error() {
        let records = [commit("tc-1-1"), commit("tc-1-2"), commit("tc-1-3")];
        let whole = encode_all(&records);
        let first = encode_all(&records[..1]).len();
        let second = encode_all(&records[..2]).len();
        for i in first..second {
            let mut bad = file_of(&whole);
            bad[FILE_HEADER + i] ^= 0x01;
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(FILE_NAME), &bad).unwrap();
            match FileLog::open(dir.path(), LogOptions::default()) {
                Err(LogError::Corrupt { offset, .. }) => assert_eq!(offset, FILE_HEADER + first, "flip at {i}"),
                Err(other) => panic!("flip at {i}: {other}"),
                Ok(_) => panic!("flip at {i}: a corrupt log was opened"),
            }
            // Nothing was rewritten: the evidence stays for the operator.
            assert_eq!(std::fs::read(dir.path().join(FILE_NAME)).unwrap(), bad);
        }
    }

    #[test]
    fn replay_is_idempotent() {
        let records = vec![commit("tc-1-1"), commit("tc-1-2"), end("tc-1-1"), end("tc-1-9")];
        let once = replay(Path::new("x"), &file_of(&encode_all(&records))).unwrap().index;
        let mut twice_records = records.clone();
        twice_records.extend(records);
        let twice = replay(Path::new("x"), &file_of(&encode_all(&twice_records)))
            .unwrap()
            .index;
        assert_eq!(once, twice);
        assert_eq!(gtrids(&once.unfinished()), ["tc-1-2"]);
        // Reopening (which compacts) again and again keeps the same decisions.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), file_of(&encode_all(&twice_records))).unwrap();
        for _ in 0..3 {
            let (log, unfinished) = open(dir.path());
            assert_eq!(unfinished, once.unfinished());
            let looked = ["tc-1-1", "tc-1-2", "tc-1-9"].map(|g| log.lookup(g));
            assert_eq!(looked, [Logged::Committed, Logged::Committed, Logged::Absent]);
        }
    }

    #[tokio::test]
    async fn decisions_survive_a_restart_and_unended_ones_come_back() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, unfinished) = open(dir.path());
            assert!(unfinished.is_empty());
            log.commit("tc-1-1", &["a".to_owned(), "b".to_owned()]).await.unwrap();
            log.commit("tc-1-2", &["b".to_owned(), "c".to_owned()]).await.unwrap();
            log.end("tc-1-1");
            // The END is not awaited; a durable COMMIT behind it flushes it.
            log.commit("tc-1-3", &["a".to_owned(), "c".to_owned()]).await.unwrap();
            log.end("tc-1-3");
            assert_eq!(log.lookup("tc-1-1"), Logged::Committed);
        }
        let (log, unfinished) = open(dir.path());
        assert_eq!(
            unfinished,
            [Unfinished {
                gtrid: "tc-1-2".to_owned(),
                participants: vec!["b".to_owned(), "c".to_owned()],
            }]
        );
        // Ended COMMITs are still answered within the retention.
        assert_eq!(
            (log.lookup("tc-1-1"), log.lookup("tc-1-3")),
            (Logged::Committed, Logged::Committed)
        );
    }

    #[test]
    fn damage_to_the_compacted_base_or_header_is_always_corruption() {
        let dir = tempfile::tempdir().unwrap();
        drop(FileLog::open(dir.path(), LogOptions::default()).unwrap());
        let path = dir.path().join(FILE_NAME);
        // A compacted base holding one unfinished COMMIT, nothing after it.
        let mut index = Index::default();
        index.apply(commit("tc-1-1"));
        drop(compact(dir.path(), &index).unwrap());
        let good = std::fs::read(&path).unwrap();
        assert_eq!(replay(&path, &good).unwrap().index.unfinished().len(), 1);
        // The header and the base; the preallocated zeros follow them.
        let base_end = FILE_HEADER + usize::try_from(decode_header(&good).unwrap()).unwrap();
        assert!(good[base_end..].iter().all(|&b| b == 0));
        for i in 0..base_end {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            assert!(
                matches!(replay(&path, &bad), Err(LogError::Corrupt { .. })),
                "flip at {i}"
            );
        }
        // Cut short, or a file of another format: refused, not emptied.
        assert!(replay(&path, &good[..base_end - 1]).is_err());
        // Zeros over the base are damage too, not the log's end.
        let mut zeroed = good.clone();
        zeroed[FILE_HEADER..base_end].fill(0);
        assert!(matches!(replay(&path, &zeroed), Err(LogError::Corrupt { .. })));
        assert!(replay(&path, &encode_all(&[commit("tc-1-1")])).is_err());
    }

    #[tokio::test]
    async fn what_compaction_drops_is_known_to_be_forgotten_not_absent() {
        let dir = tempfile::tempdir().unwrap();
        // Compact after every write; nothing ended is kept.
        let options = LogOptions {
            retention: Duration::ZERO,
            compact_after: 1,
        };
        {
            let (log, _) = FileLog::open(dir.path(), options).unwrap();
            log.commit("tc-1-5", &["a".to_owned()]).await.unwrap();
            assert_eq!(log.lookup("tc-1-5"), Logged::Committed);
            log.end("tc-1-5");
            // The END rides with this group; the compaction after it (once
            // the waiter is answered) drops the ended COMMIT.
            log.commit("tc-1-7", &["a".to_owned()]).await.unwrap();
        }
        for _ in 0..2 {
            let (log, unfinished) = FileLog::open(dir.path(), options).unwrap();
            assert_eq!(gtrids(&unfinished), ["tc-1-7"]);
            assert_eq!(log.lookup("tc-1-7"), Logged::Committed);
            // It may have committed: the log says it cannot tell.
            assert_eq!(log.lookup("tc-1-5"), Logged::Forgotten);
            assert_eq!(log.lookup("tc-1-2"), Logged::Forgotten);
            // Newer than anything dropped, or another epoch: presumed abort holds.
            assert_eq!(log.lookup("tc-1-6"), Logged::Absent);
            assert_eq!(log.lookup("tc-2-1"), Logged::Absent);
        }
    }

    #[tokio::test]
    async fn ends_wait_for_a_commit_group_or_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path());
        log.commit("tc-1-1", &["a".to_owned()]).await.unwrap();
        let syncs = log.syncs();
        log.end("tc-1-1");
        let ended = || {
            let bytes = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
            replay(dir.path(), &bytes).unwrap().index.unfinished().is_empty()
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!ended(), "an END alone is not written at once");
        tokio::time::sleep(END_FLUSH + Duration::from_millis(500)).await;
        assert!(ended(), "an END is written within a second");
        assert_eq!(log.syncs(), syncs, "no COMMIT group was needed for it");
    }

    #[tokio::test]
    async fn compaction_bounds_the_file_and_keeps_what_is_needed() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions {
            retention: Duration::ZERO,
            compact_after: 4096,
        };
        let (log, _) = FileLog::open(dir.path(), options).unwrap();
        let names = ["a".to_owned(), "b".to_owned()];
        for i in 0..2_000 {
            let gtrid = format!("tc-1-{i}");
            log.commit(&gtrid, &names).await.unwrap();
            // Every tenth stays unfinished.
            if i % 10 != 0 {
                log.end(&gtrid);
            }
        }
        log.commit("tc-1-last", &names).await.unwrap();
        assert!(log.compactions() > 10, "{} compactions", log.compactions());
        let bytes = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        let valid = replay(dir.path(), &bytes).unwrap().valid_len;
        assert!(valid < 4096 + 200 * 40, "log holds {valid} bytes after compaction");
        assert!(
            bytes.len() <= valid + 2 * PREALLOCATE as usize,
            "file is {} bytes",
            bytes.len()
        );
        drop(log);
        let (_, unfinished) = FileLog::open(dir.path(), options).unwrap();
        let mut want: Vec<String> = (0..2_000).step_by(10).map(|i| format!("tc-1-{i}")).collect();
        want.push("tc-1-last".to_owned());
        want.sort();
        assert_eq!(unfinished.into_iter().map(|u| u.gtrid).collect::<Vec<_>>(), want);
    }

    #[tokio::test]
    async fn a_log_that_outgrows_its_preallocation_keeps_every_decision() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions {
            compact_after: u64::MAX,
            ..LogOptions::default()
        };
        let names: Vec<String> = (0..5).map(|i| format!("participant-{i}")).collect();
        let (log, _) = FileLog::open(dir.path(), options).unwrap();
        let mut all = Vec::new();
        // Groups of 1,000 concurrent COMMITs, about 3 preallocations in all.
        for round in 0..30 {
            let gtrids: Vec<String> = (0..1_000).map(|i| format!("tc-1-{round}-{i:0>40}")).collect();
            let pending: Vec<_> = gtrids.iter().map(|g| log.commit(g, &names)).collect();
            for result in futures::future::join_all(pending).await {
                result.unwrap();
            }
            all.extend(gtrids);
        }
        let size = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert!(size > 2 * PREALLOCATE, "the log grew to {size} bytes");
        drop(log);
        let (log, unfinished) = FileLog::open(dir.path(), options).unwrap();
        assert_eq!(unfinished.len(), all.len());
        assert!(all.iter().all(|g| log.lookup(g) == Logged::Committed));
    }

    #[tokio::test]
    async fn group_commit_covers_concurrent_writers_with_few_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path());
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
        let r = replay(dir.path(), &bytes).unwrap();
        assert_eq!(r.index.unfinished().len(), writers as usize);
        assert!(bytes[r.valid_len..].iter().all(|&b| b == 0));
    }
}
