//! Bearer tokens: how a client without a certificate proves who it is.
//!
//! The coordinator keeps only SHA-256 hashes, one per line of a token file:
//!
//! ```text
//! # principal  role      sha256 of the token, hex
//! shop         client    2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
//! alice        operator  fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9
//! ```
//!
//! (`printf %s "$TOKEN" | sha256sum` prints the hash.) A client sends
//! `authorization: Bearer <token>`. Tokens never appear in a log: only the
//! principal they name does.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::identity::{Identity, Role};

/// The principals bearer tokens stand for, by the token's hash.
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Identity>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("token file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_hash = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let n = n + 1;
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, hash] = fields[..] else {
                return Err(format!(
                    "line {n}: expected `<principal> <client|operator> <sha256 hex>`"
                ));
            };
            let role = match Role::parse(role) {
                Some(role @ (Role::Client | Role::Operator)) => role,
                _ => return Err(format!("line {n}: role {role:?} must be client or operator")),
            };
            let identity = Identity::new(role, name).map_err(|e| format!("line {n}: {e}"))?;
            let hash = decode_hex(hash).ok_or_else(|| format!("line {n}: the hash must be 64 hex digits"))?;
            if by_hash.insert(hash, identity).is_some() {
                return Err(format!("line {n}: the same token hash appears twice"));
            }
        }
        Ok(Self { by_hash })
    }

    /// Who `token` stands for.
    pub fn principal(&self, token: &str) -> Option<&Identity> {
        self.by_hash.get(&hash(token))
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// SHA-256 of a token, as the token file stores it.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Hex of a token's hash, for writing token files.
pub fn hash_hex(token: &str) -> String {
    hash(token).iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_by_their_hash() {
        let file = format!(
            "# comment\nshop client {}\n\nalice operator {}  # trailing\n",
            hash_hex("s3cret"),
            hash_hex("root-ish")
        );
        let tokens = Tokens::parse(&file).unwrap();
        assert_eq!(
            tokens.principal("s3cret"),
            Some(&Identity::new(Role::Client, "shop").unwrap())
        );
        assert_eq!(tokens.principal("root-ish").map(|i| i.role), Some(Role::Operator));
        assert_eq!(tokens.principal("s3cret "), None);
        assert_eq!(tokens.principal(""), None);
    }

    #[test]
    fn bad_lines_are_named() {
        let h = hash_hex("x");
        for (bad, want) in [
            ("shop client".to_owned(), "line 1"),
            (format!("shop coordinator {h}"), "must be client or operator"),
            (format!("shop client {}", &h[..10]), "64 hex digits"),
            (format!("sh:op client {h}"), "must be 1 to 63"),
            (format!("a client {h}\nb client {h}"), "line 2: the same token"),
        ] {
            let err = Tokens::parse(&bad).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
        assert_eq!(
            hash_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
