//! Global transaction ids.
//!
//! A gtrid is `<coordinator name>-<epoch>-<sequence>`. The epoch is bumped
//! and made durable on the data dir at every start, so ids never repeat
//! across restarts (a repeated gtrid could be mistaken for an old branch
//! still prepared in some database). It names its coordinator and fits
//! MySQL's 64-byte gtrid limit.
//!
//! How far each epoch's sequence got is kept too, reserved ahead in blocks
//! (`issued`): an id beyond it was never issued, so GetTransaction answers
//! NOT_FOUND for it without asking (and fencing) any participant.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tandem_common::names;

use crate::error::Error;

const EPOCH_FILE: &str = "epoch";
/// `<epoch> <highest sequence reserved>` per line.
const ISSUED_FILE: &str = "issued";
/// Sequence numbers reserved at a time (one fsync'd write each).
const RESERVE_BLOCK: u64 = 10_000;

/// Where a gtrid comes from, as seen by this coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Not one of ours (another coordinator's, or not a tandem gtrid).
    Foreign,
    /// Ours, from an earlier run of this coordinator.
    EarlierRun,
    /// Ours, issued by this run.
    ThisRun,
    /// Ours in form, but never issued.
    NeverIssued,
}

#[derive(Debug)]
pub struct IdGen {
    name: String,
    prefix: String,
    epoch: u64,
    seq: AtomicU64,
    /// Every epoch's highest reserved sequence number, this one's
    /// included; an id above it was never issued.
    reserved: Mutex<BTreeMap<u64, u64>>,
    /// This epoch's reservation, read without the lock.
    reserved_now: AtomicU64,
    issued_path: PathBuf,
    data_dir: PathBuf,
}

impl IdGen {
    /// Starts a new epoch for coordinator `name` on `data_dir`.
    pub fn open(data_dir: &Path, name: &str) -> Result<Self, Error> {
        validate_name(name)?;
        let path = data_dir.join(EPOCH_FILE);
        let io = |what: &str, e: std::io::Error| Error::Internal(format!("{what} {}: {e}", path.display()));
        let previous = match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|e| Error::Internal(format!("corrupt epoch file {}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io("cannot read", e)),
        };
        let epoch = previous + 1;
        // Write-then-rename, with fsyncs, so a crash leaves the old or the
        // new epoch, never a torn one.
        let tmp = data_dir.join(format!("{EPOCH_FILE}.tmp"));
        let mut file = File::create(&tmp).map_err(|e| io("cannot write", e))?;
        file.write_all(epoch.to_string().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io("cannot write", e))?;
        fs::rename(&tmp, &path).map_err(|e| io("cannot replace", e))?;
        File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot sync directory of", e))?;
        let issued_path = data_dir.join(ISSUED_FILE);
        let mut reserved = read_issued(&issued_path)?;
        // Nothing issued yet in this epoch, durably so.
        reserved.insert(epoch, 0);
        write_issued(&issued_path, data_dir, &reserved)?;
        Ok(Self {
            name: name.to_owned(),
            prefix: format!("{name}-{epoch}-"),
            epoch,
            seq: AtomicU64::new(0),
            reserved: Mutex::new(reserved),
            reserved_now: AtomicU64::new(0),
            issued_path,
            data_dir: data_dir.to_owned(),
        })
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Where `gtrid` comes from.
    pub fn origin(&self, gtrid: &str) -> Origin {
        let parsed = gtrid
            .strip_prefix(self.name.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(epoch, seq)| Some((epoch.parse::<u64>().ok()?, seq.parse::<u64>().ok()?)));
        let reserved = |epoch: u64| {
            self.reserved
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&epoch)
                .copied()
        };
        match parsed {
            None => Origin::Foreign,
            // Epochs from before reservations were kept have no bound.
            Some((epoch, seq)) if epoch < self.epoch && reserved(epoch).is_none_or(|upto| seq <= upto) => {
                Origin::EarlierRun
            }
            Some((epoch, seq)) if epoch == self.epoch && seq >= 1 && seq <= self.seq.load(Ordering::Relaxed) => {
                Origin::ThisRun
            }
            Some(_) => Origin::NeverIssued,
        }
    }

    /// A fresh id; every [`RESERVE_BLOCK`] ids, the next block is made
    /// durable first.
    pub fn next(&self) -> Result<String, Error> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if seq > self.reserved_now.load(Ordering::Acquire) {
            let mut reserved = self.reserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if seq > self.reserved_now.load(Ordering::Acquire) {
                let upto = seq + RESERVE_BLOCK;
                reserved.insert(self.epoch, upto);
                write_issued(&self.issued_path, &self.data_dir, &reserved)?;
                self.reserved_now.store(upto, Ordering::Release);
            }
        }
        Ok(format!("{}{seq}", self.prefix))
    }
}

fn read_issued(path: &Path) -> Result<BTreeMap<u64, u64>, Error> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::Internal(format!("cannot read {}: {e}", path.display()))),
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut parts = line.split_whitespace().map(str::parse::<u64>);
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Ok(epoch)), Some(Ok(upto)), None) => Ok((epoch, upto)),
                _ => Err(Error::Internal(format!("corrupt line {line:?} in {}", path.display()))),
            }
        })
        .collect()
}

/// Replaces the `issued` file (write, fsync, rename, fsync the directory).
fn write_issued(path: &Path, dir: &Path, reserved: &BTreeMap<u64, u64>) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Internal(format!("cannot write {}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io)?;
    let text: String = reserved
        .iter()
        .map(|(epoch, upto)| format!("{epoch} {upto}\n"))
        .collect();
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// The epoch and sequence number of a gtrid of any coordinator.
pub fn epoch_and_seq(gtrid: &str) -> Option<(u64, u64)> {
    let mut parts = gtrid.rsplitn(3, '-');
    let seq = parts.next()?.parse().ok()?;
    let epoch = parts.next()?.parse().ok()?;
    parts.next().filter(|name| !name.is_empty())?;
    Some((epoch, seq))
}

pub fn validate_name(name: &str) -> Result<(), Error> {
    names::validate_coordinator_name(name).map_err(Error::InvalidArgument)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_seq_parse_any_coordinators_gtrid() {
        assert_eq!(epoch_and_seq("tc-3-41"), Some((3, 41)));
        assert_eq!(epoch_and_seq("other_tc-1-2"), Some((1, 2)));
        for bad in ["tc-3", "-3-41", "tc-x-1", "tc-1-y", "", "3-41"] {
            assert_eq!(epoch_and_seq(bad), None, "{bad}");
        }
    }

    #[test]
    fn origin_tells_ours_from_theirs() {
        let dir = tempfile::tempdir().unwrap();
        IdGen::open(dir.path(), "tc").unwrap().next().unwrap();
        let ids = IdGen::open(dir.path(), "tc").unwrap();
        let issued = ids.next().unwrap();
        assert_eq!(ids.origin(&issued), Origin::ThisRun);
        assert_eq!(ids.origin("tc-1-77"), Origin::EarlierRun);
        assert_eq!(ids.origin("tc-2-2"), Origin::NeverIssued);
        assert_eq!(ids.origin("tc-3-1"), Origin::NeverIssued);
        for foreign in ["tc2-1-1", "other-1-1", "tc-x-1", "tc-1", "tc", ""] {
            assert_eq!(ids.origin(foreign), Origin::Foreign, "{foreign}");
        }
    }

    #[test]
    fn epochs_grow_across_restarts_so_ids_never_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let a = IdGen::open(dir.path(), "tc").unwrap();
        let first = a.next().unwrap();
        assert_eq!(first, "tc-1-1");
        drop(a);
        let b = IdGen::open(dir.path(), "tc").unwrap();
        assert_eq!(b.epoch(), 2);
        assert_ne!(b.next().unwrap(), first);
        let longest = format!(
            "{}-{}-{}",
            "n".repeat(names::MAX_COORDINATOR_NAME_LEN),
            u64::MAX,
            u64::MAX
        );
        assert!(longest.len() <= 64);
    }

    #[test]
    fn ids_beyond_what_an_earlier_run_reserved_were_never_issued() {
        let dir = tempfile::tempdir().unwrap();
        let first = IdGen::open(dir.path(), "tc").unwrap();
        for _ in 0..3 {
            first.next().unwrap();
        }
        drop(first);
        // Epoch 2 never issued anything, so it reserved nothing.
        drop(IdGen::open(dir.path(), "tc").unwrap());
        let ids = IdGen::open(dir.path(), "tc").unwrap();
        assert_eq!(ids.origin("tc-1-3"), Origin::EarlierRun);
        assert_eq!(ids.origin(&format!("tc-1-{}", 1 + RESERVE_BLOCK)), Origin::EarlierRun);
        assert_eq!(ids.origin(&format!("tc-1-{}", 2 + RESERVE_BLOCK)), Origin::NeverIssued);
        assert_eq!(ids.origin("tc-2-1"), Origin::NeverIssued);
        // An epoch from before bounds were kept: every id may have been.
        std::fs::write(dir.path().join(ISSUED_FILE), "3 0\n").unwrap();
        let older = IdGen::open(dir.path(), "tc").unwrap();
        assert_eq!(older.origin("tc-1-999999"), Origin::EarlierRun);
        // A whole block is reserved, durably, before its ids go out.
        for _ in 0..=RESERVE_BLOCK {
            ids.next().unwrap();
        }
        drop(older);
        let again = IdGen::open(dir.path(), "tc").unwrap();
        assert_eq!(again.origin(&format!("tc-3-{}", RESERVE_BLOCK + 1)), Origin::EarlierRun);
        assert_eq!(
            again.origin(&format!("tc-3-{}", 3 * RESERVE_BLOCK)),
            Origin::NeverIssued
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "a-b", "a b", &"n".repeat(names::MAX_COORDINATOR_NAME_LEN + 1)] {
            assert!(IdGen::open(dir.path(), bad).is_err(), "{bad:?}");
        }
    }
}
