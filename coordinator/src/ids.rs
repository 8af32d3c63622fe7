//! Global transaction ids.
//!
//! A gtrid is `<coordinator name>-<epoch>-<sequence>`. The epoch is drawn
//! at random at every start (63 bits), so ids never repeat across restarts
//! or replicas without any state on disk and without coordination (a
//! repeated gtrid could be mistaken for an old branch still prepared in
//! some database). It names the replica that issued it, so a participant
//! asks that replica first, and fits MySQL's 64-byte gtrid limit.

use std::sync::atomic::{AtomicU64, Ordering};

use tandem_common::names;

use crate::error::Error;

/// Where a gtrid comes from, as seen by this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Issued by this run of this replica.
    ThisRun,
    /// In this run's form, but never issued: nobody can have used it.
    NeverIssued,
    /// Another run's or another replica's: only the participants know it.
    Elsewhere,
    /// Not a tandem gtrid at all.
    Malformed,
}

#[derive(Debug)]
pub struct IdGen {
    prefix: String,
    epoch: u64,
    seq: AtomicU64,
}

impl IdGen {
    /// Ids for a new run of coordinator `name`.
    pub fn new(name: &str) -> Result<Self, Error> {
        validate_name(name)?;
        // Zero is left out so a parsed epoch of 0 is never ours.
        let epoch = (rand::random::<u64>() >> 1).max(1);
        Ok(Self {
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
        if names::is_keyed_gtrid(gtrid) {
            // Derived from a client key: any replica may have run it.
            return Origin::Elsewhere;
        }
        let Some((name, epoch, seq)) = parse(gtrid) else {
            return Origin::Malformed;
        };
        let this_run = gtrid.starts_with(&self.prefix) && epoch == self.epoch && !name.is_empty();
        if !this_run {
            Origin::Elsewhere
        } else if seq >= 1 && seq <= self.seq.load(Ordering::Relaxed) {
            Origin::ThisRun
        } else {
            Origin::NeverIssued
        }
    }

    /// A fresh id.
    pub fn next(&self) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}{seq}", self.prefix)
    }
}

/// The coordinator name, epoch and sequence number of a gtrid of any
/// replica.
pub fn parse(gtrid: &str) -> Option<(&str, u64, u64)> {
    let mut parts = gtrid.rsplitn(3, '-');
    let seq = parts.next()?.parse().ok()?;
    let epoch = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    names::validate_coordinator_name(name).ok()?;
    Some((name, epoch, seq))
}

pub fn validate_name(name: &str) -> Result<(), Error> {
    names::validate_coordinator_name(name).map_err(Error::InvalidArgument)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_any_replicas_gtrid() {
        assert_eq!(parse("tc-3-41"), Some(("tc", 3, 41)));
        assert_eq!(parse("other_tc-1-2"), Some(("other_tc", 1, 2)));
        for bad in ["tc-3", "-3-41", "tc-x-1", "tc-1-y", "", "3-41", "a-b-1-2", "a'b-1-2"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn origin_tells_this_runs_ids_from_the_rest() {
        let ids = IdGen::new("tc").unwrap();
        let issued = ids.next();
        assert_eq!(ids.origin(&issued), Origin::ThisRun);
        let epoch = ids.epoch();
        assert_eq!(ids.origin(&format!("tc-{epoch}-2")), Origin::NeverIssued);
        assert_eq!(ids.origin(&format!("tc-{epoch}-0")), Origin::NeverIssued);
        assert_eq!(ids.origin(&format!("tc-{}-1", epoch ^ 1)), Origin::Elsewhere);
        assert_eq!(ids.origin(&format!("tc2-{epoch}-1")), Origin::Elsewhere);
        assert_eq!(ids.origin(&format!("xtc-{epoch}-1")), Origin::Elsewhere);
        assert_eq!(ids.origin(&names::keyed_gtrid("client a", "k")), Origin::Elsewhere);
        for malformed in ["tc-x-1", "tc-1", "tc", "", "a b-1-1"] {
            assert_eq!(ids.origin(malformed), Origin::Malformed, "{malformed}");
        }
    }

    #[test]
    fn every_run_draws_its_own_epoch_so_ids_never_repeat() {
        let a = IdGen::new("tc").unwrap();
        let b = IdGen::new("tc").unwrap();
        assert_ne!(a.epoch(), b.epoch());
        assert_ne!(a.next(), b.next());
        assert_eq!(a.origin(&b.next()), Origin::Elsewhere);
        let longest = format!(
            "{}-{}-{}",
            "n".repeat(names::MAX_COORDINATOR_NAME_LEN),
            u64::MAX,
            u64::MAX
        );
        assert!(longest.len() <= 64);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "a-b", "a b", &"n".repeat(names::MAX_COORDINATOR_NAME_LEN + 1)] {
            assert!(IdGen::new(bad).is_err(), "{bad:?}");
        }
    }
}
