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

/// A coordinator's name: a name without '-', at most 22 long.
pub fn validate_coordinator_name(name: &str) -> Result<(), String> {
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
    fn every_name_is_an_xa_id_and_every_coordinator_name_a_name() {
        let names = ["alpha", "shop_1", "a-b", "z9"];
        for name in names {
            assert!(validate_xa_id("bqual", name).is_ok());
        }
        assert!(validate_name(&"n".repeat(MAX_COORDINATOR_NAME_LEN)).is_ok());
    }
}
