//! The characters tandem's names and ids may hold, written once.
//!
//! A name ends up in a certificate's DNS name (`<name>.<role>.tandem`), as
//! an XA bqual, and, for a coordinator, at the head of every gtrid it
//! issues; a gtrid is written into XA SQL text, which takes no parameters.
//! So all of them use one alphabet, safe in all three places: ASCII
//! letters, digits, '-' and '_'. A coordinator name leaves out '-', which
//! separates the parts of its gtrids.

/// Longest name: a DNS label (and within an XA bqual's 64 bytes).
pub const MAX_NAME_LEN: usize = 63;
/// Longest coordinator name: leaves room for two u64s in a 64-byte gtrid.
pub const MAX_COORDINATOR_NAME_LEN: usize = 22;
/// MySQL's limit for a gtrid and a bqual, each.
pub const MAX_XA_ID_LEN: usize = 64;
/// Longest client key (idempotency key), in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// The head of every gtrid derived from a client key. No coordinator may
/// take the name: a keyed gtrid names no replica, any of them may run it.
pub const KEYED_PREFIX: &str = "key-";
/// Hex digits of the key's digest in a keyed gtrid (160 bits).
const KEY_DIGEST_HEX: usize = 40;

/// The alphabet every name and id is drawn from.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// An identity's name (participants, clients, operators, coordinators):
/// 1 to 63 of the alphabet, not starting or ending with '-' (a DNS label).
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(is_name_char)
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1 to {MAX_NAME_LEN} ASCII letters, digits, '-' or '_' (not starting or ending \
             with '-')"
        ))
    }
}

/// A coordinator's name: a name without '-', at most 22 long, and not
/// `key` (the head of keyed gtrids).
pub fn validate_coordinator_name(name: &str) -> Result<(), String> {
    if name == KEYED_PREFIX.trim_end_matches('-') {
        return Err(format!(
            "coordinator name {name:?} is reserved: gtrids derived from client keys begin with it"
        ));
    }
    let ok = !name.is_empty() && name.len() <= MAX_COORDINATOR_NAME_LEN && !name.contains('-');
    if ok && validate_name(name).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "coordinator name {name:?} must be 1 to {MAX_COORDINATOR_NAME_LEN} ASCII letters, digits or '_'"
        ))
    }
}

/// A gtrid or bqual about to be written into XA SQL text: 1 to 64 of the
/// alphabet. Nothing else can reach the SQL.
pub fn validate_xa_id(kind: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_XA_ID_LEN {
        return Err(format!("{kind} must be 1 to {MAX_XA_ID_LEN} bytes, got {}", id.len()));
    }
    match id.chars().find(|c| !is_name_char(*c)) {
        Some(bad) => Err(format!(
            "{kind} {id:?} contains {bad:?}; allowed are ASCII letters, digits, '-' and '_'"
        )),
        None => Ok(()),
    }
}

/// A client's idempotency key: 1 to [`MAX_KEY_LEN`] bytes of printable
/// text (no control characters). It only ever reaches a digest, never SQL.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!("key must be 1 to {MAX_KEY_LEN} bytes, got {}", key.len()));
    }
    if key.chars().any(char::is_control) {
        return Err("key must not contain control characters".to_owned());
    }
    Ok(())
}

/// The gtrid of the transaction that principal `owner` (its identity as
/// text) runs under client key `key`: the same at every replica and in
/// every attempt, so a retried Submit finds its first attempt's branches,
/// and different for every principal, so one client's key never reaches
/// another's transaction. `key-` and 40 hex digits of a SHA-256 over both.
pub fn keyed_gtrid(owner: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(b"tandem keyed gtrid v1\0");
    digest.update((owner.len() as u64).to_be_bytes());
    digest.update(owner.as_bytes());
    digest.update(key.as_bytes());
    let hex: String = digest
        .finalize()
        .iter()
        .take(KEY_DIGEST_HEX / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{KEYED_PREFIX}{hex}")
}

/// Whether `gtrid` has the form of one derived from a client key.
pub fn is_keyed_gtrid(gtrid: &str) -> bool {
    gtrid.strip_prefix(KEYED_PREFIX).is_some_and(|hex| {
        hex.len() == KEY_DIGEST_HEX && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for good in ["a", "alpha", "shop_1", "a-b", &"n".repeat(MAX_NAME_LEN)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a.b",
            "a:b",
            "a b",
            "é",
            "a'b",
            &"n".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn coordinator_names_keep_the_gtrid_separator_out() {
        assert!(validate_coordinator_name("tc_1").is_ok());
        for bad in ["", "a-b", "a b", &"n".repeat(MAX_COORDINATOR_NAME_LEN + 1)] {
            assert!(validate_coordinator_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn xa_ids_that_could_escape_the_sql_text_are_refused() {
        for bad in [
            "",
            "a'b",
            "a b",
            "x\\",
            "a;XA COMMIT",
            "a.b",
            "a:b",
            "é",
            &"g".repeat(MAX_XA_ID_LEN + 1),
        ] {
            assert!(validate_xa_id("gtrid", bad).is_err(), "{bad:?}");
        }
        assert!(validate_xa_id("gtrid", &"g".repeat(MAX_XA_ID_LEN)).is_ok());
        assert!(validate_xa_id("gtrid", "tc-1-42").is_ok());
    }

    #[test]
    fn keyed_gtrids_are_per_principal_and_never_a_replicas() {
        let a = keyed_gtrid("client alice", "order-17");
        assert_eq!(a, keyed_gtrid("client alice", "order-17"));
        assert_ne!(a, keyed_gtrid("client bob", "order-17"));
        assert_ne!(a, keyed_gtrid("client alice", "order-18"));
        // The owner's length is hashed: no shifting of bytes between the two.
        assert_ne!(keyed_gtrid("ab", "c"), keyed_gtrid("a", "bc"));
        assert!(is_keyed_gtrid(&a), "{a}");
        assert!(validate_xa_id("gtrid", &a).is_ok());
        for not in ["tc-1-2", "key-12", "key-", &a.to_uppercase(), &format!("{a}0")] {
            assert!(!is_keyed_gtrid(not), "{not}");
        }
        assert!(validate_coordinator_name("key").is_err());
        assert!(validate_key("k").is_ok());
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        for bad in ["", "a\nb", &"k".repeat(MAX_KEY_LEN + 1)] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_name_is_an_xa_id_and_every_coordinator_name_a_name() {
        let names = ["alpha", "shop_1", "a-b", "z9"];
        for name in names {
            assert!(validate_xa_id("bqual", name).is_ok());
        }
        assert!(validate_name(&"n".repeat(MAX_COORDINATOR_NAME_LEN)).is_ok());
    }
}
