//! Static API keys, hashed at rest. A key is `cxrk_` + 43 base64url characters (256 random
//! bits); the keys file holds only `sha256:<hex> <name> <role,role>` per line.
//!
//! Why SHA-256 and not a password hash (argon2): a key has 256 bits of entropy, so a leaked
//! hash cannot be brute-forced whatever the hash's speed; a deliberately slow hash would only
//! add latency to every request. Lookup compares every stored hash in constant time
//! (`subtle`), so the time taken says nothing about how close a guess came.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{parse_roles, AuthConfigError, Principal, Role, Via};

pub const KEY_PREFIX: &str = "cxrk_";

#[derive(Debug, Clone)]
struct KeyEntry {
    hash: [u8; 32],
    name: String,
    roles: BTreeSet<Role>,
}

/// The accepted keys (hashes only).
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    entries: Vec<KeyEntry>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new random key and its keys-file line.
pub fn generate(name: &str, roles: &BTreeSet<Role>) -> (String, String) {
    let raw: [u8; 32] = rand::random();
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let line = file_line(&key, name, roles);
    (key, line)
}

/// The keys-file line for `key`.
pub fn file_line(key: &str, name: &str, roles: &BTreeSet<Role>) -> String {
    let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    format!(
        "sha256:{} {} {}",
        hex::encode(digest(key)),
        name,
        roles.join(",")
    )
}

impl ApiKeys {
    /// Reads a keys file. A line that does not parse stops the service: a typo must not
    /// silently lock out (or, worse, appear to configure) a client.
    pub fn load(path: &Path) -> Result<Self, AuthConfigError> {
        let err = |reason: String| AuthConfigError::Keys {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let keys = Self::parse(&text).map_err(err)?;
        if keys.entries.is_empty() {
            return Err(err("no keys in the file".into()));
        }
        Ok(keys)
    }

    /// Parses keys-file text; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |m: &str| format!("line {}: {m}", n + 1);
            let mut parts = line.split_whitespace();
            let (Some(hash), Some(name), Some(roles), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(at("expected `sha256:<hex> <name> <role,role>`"));
            };
            let hex_hash = hash
                .strip_prefix("sha256:")
                .ok_or_else(|| at("hash must start with sha256:"))?;
            let bytes = hex::decode(hex_hash).map_err(|e| at(&format!("hash: {e}")))?;
            let hash: [u8; 32] = bytes
                .try_into()
                .map_err(|_| at("hash must be 32 bytes (64 hex digits)"))?;
            let roles = parse_roles(roles).map_err(|e| at(&e))?;
            if roles.is_empty() {
                return Err(at("no roles"));
            }
            entries.push(KeyEntry {
                hash,
                name: name.to_string(),
                roles,
            });
        }
        Ok(ApiKeys { entries })
    }

    pub fn extend(&mut self, other: ApiKeys) {
        self.entries.extend(other.entries);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of a presented key, if it is one of ours. Every entry is compared, with
    /// no early exit, in constant time.
    pub fn verify(&self, presented: &str) -> Option<Principal> {
        let h = digest(presented);
        let mut found: Option<&KeyEntry> = None;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(&h)) {
                found = Some(e);
            }
        }
        found.map(|e| Principal {
            id: format!("key:{}", e.name),
            roles: e.roles.clone(),
            via: Via::ApiKey,
            not_after: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_verifies_and_others_do_not() {
        let roles = parse_roles("reader,metrics").unwrap();
        let (key, line) = generate("pacs-router", &roles);
        assert!(key.starts_with(KEY_PREFIX));
        assert!(!line.contains(&key), "the file must not hold the key");
        let keys = ApiKeys::parse(&format!("# comment\n\n{line}\n")).unwrap();
        let p = keys.verify(&key).expect("own key");
        assert_eq!(p.id, "key:pacs-router");
        assert!(p.has(Role::Reader) && p.has(Role::Metrics) && !p.has(Role::Uploader));
        let (other, _) = generate("x", &roles);
        assert!(keys.verify(&other).is_none());
        assert!(keys.verify("").is_none());
    }

    #[test]
    fn malformed_lines_are_refused_with_their_line_number() {
        for bad in [
            "sha256:00 name reader",
            "md5:abcd name reader",
            "sha256:zz name reader",
            "only-two fields",
            &format!("sha256:{} name wizard", "0".repeat(64)),
            &format!("sha256:{} name reader extra", "0".repeat(64)),
        ] {
            let e = ApiKeys::parse(&format!("# ok\n{bad}")).unwrap_err();
            assert!(e.starts_with("line 2"), "{bad}: {e}");
        }
    }
}
