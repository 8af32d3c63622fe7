//! Global transaction ids.
//!
//! A gtrid is `<coordinator name>-<epoch>-<sequence>`. The epoch is bumped
//! and made durable on the data dir at every start, so ids never repeat
//! across restarts (a repeated gtrid could be mistaken for an old branch
//! still prepared in some database). It names its coordinator and fits
//! MySQL's 64-byte gtrid limit.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

const EPOCH_FILE: &str = "epoch";
/// Longest coordinator name: leaves room for two u64s in 64 bytes.
pub const MAX_NAME_LEN: usize = 22;

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
        Ok(Self {
            name: name.to_owned(),
            prefix: format!("{name}-{epoch}-"),
            epoch,
            seq: AtomicU64::new(0),
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
        match parsed {
            None => Origin::Foreign,
            Some((epoch, _)) if epoch < self.epoch => Origin::EarlierRun,
            Some((epoch, seq)) if epoch == self.epoch && seq >= 1 && seq <= self.seq.load(Ordering::Relaxed) => {
                Origin::ThisRun
            }
            Some(_) => Origin::NeverIssued,
        }
    }

    pub fn next(&self) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}{seq}", self.prefix)
    }
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
    let ok =
        !name.is_empty() && name.len() <= MAX_NAME_LEN && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "coordinator name {name:?} must be 1 to {MAX_NAME_LEN} ASCII letters, digits or '_'"
        )))
    }
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
        drop(IdGen::open(dir.path(), "tc").unwrap());
        let ids = IdGen::open(dir.path(), "tc").unwrap();
        let issued = ids.next();
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
        let first = a.next();
        assert_eq!(first, "tc-1-1");
        drop(a);
        let b = IdGen::open(dir.path(), "tc").unwrap();
        assert_eq!(b.epoch(), 2);
        assert_ne!(b.next(), first);
        let longest = format!("{}-{}-{}", "n".repeat(MAX_NAME_LEN), u64::MAX, u64::MAX);
        assert!(longest.len() <= 64);
    }

    #[test]
    fn bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "a-b", "a b", &"n".repeat(MAX_NAME_LEN + 1)] {
            assert!(IdGen::open(dir.path(), bad).is_err(), "{bad:?}");
        }
    }
}
