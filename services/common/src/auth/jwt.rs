//! OIDC/JWT access tokens, validated with `jsonwebtoken` against the identity provider's JWKS:
//! signature, `iss`, `aud`, `exp` (all required). Only asymmetric algorithms are accepted, and
//! symmetric (`oct`) keys in a JWKS are ignored: an `HS256` token "signed" with a public key
//! must never validate (the classic algorithm-confusion attack).

use std::collections::BTreeSet;
use std::sync::RwLock;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{AuthConfigError, Principal, Rejection, Role, Via};

const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Clock skew tolerated on `exp`/`nbf` between the identity provider and this host.
const LEEWAY_SECS: u64 = 30;

/// Reads a JWKS from a file or an http(s) URL (at start, then every refresh).
pub async fn load_jwks(src: &str) -> Result<JwkSet, AuthConfigError> {
    let err = |reason: String| AuthConfigError::Jwks {
        source_ref: src.to_string(),
        reason,
    };
    let text = if src.starts_with("https://") || src.starts_with("http://") {
        let r = reqwest::Client::new()
            .get(src)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| err(e.to_string()))?;
        r.text().await.map_err(|e| err(e.to_string()))?
    } else {
        std::fs::read_to_string(src).map_err(|e| err(e.to_string()))?
    };
    serde_json::from_str(&text).map_err(|e| err(format!("not a JWK set: {e}")))
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
}

pub struct JwtValidator {
    /// Replaced whole by [`JwtValidator::refresh`] when the identity provider rotates keys.
    keys: RwLock<Vec<Key>>,
    source: String,
    issuer: String,
    audience: String,
    roles_claim: String,
}

/// The usable keys of a set: asymmetric ones only.
fn decode_keys(set: &JwkSet, source_ref: &str) -> Result<Vec<Key>, AuthConfigError> {
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            tracing::warn!(kid = ?jwk.common.key_id, "JWKS: symmetric key ignored");
            continue;
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthConfigError::Jwks {
            source_ref: source_ref.to_string(),
            reason: format!("key {:?}: {e}", jwk.common.key_id),
        })?;
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            key,
        });
    }
    if keys.is_empty() {
        return Err(AuthConfigError::Jwks {
            source_ref: source_ref.to_string(),
            reason: "no usable (asymmetric) key".into(),
        });
    }
    Ok(keys)
}

impl JwtValidator {
    pub fn new(
        set: JwkSet,
        issuer: String,
        audience: String,
        roles_claim: String,
        source_ref: &str,
    ) -> Result<Self, AuthConfigError> {
        Ok(JwtValidator {
            keys: RwLock::new(decode_keys(&set, source_ref)?),
            source: source_ref.to_string(),
            issuer,
            audience,
            roles_claim,
        })
    }

    /// Reads the JWKS again and uses its keys from now on; on any error the old keys stay.
    pub async fn refresh(&self) -> Result<usize, AuthConfigError> {
        let set = load_jwks(&self.source).await?;
        let keys = decode_keys(&set, &self.source)?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(n)
    }

    pub fn describe(&self) -> String {
        format!(
            "keys={} iss={} aud={} roles_claim={}",
            self.keys.read().map_or(0, |k| k.len()),
            self.issuer,
            self.audience,
            self.roles_claim
        )
    }

    fn key_for(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        match kid {
            Some(kid) => keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| k.key.clone()),
            // A token without `kid` is only unambiguous against a one-key set.
            None if keys.len() == 1 => Some(keys[0].key.clone()),
            None => None,
        }
    }

    pub fn validate(&self, token: &str) -> Result<Principal, Rejection> {
        let refuse = |m: String| Rejection::Token(m);
        let header = decode_header(token).map_err(|e| refuse(format!("malformed: {e}")))?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(refuse(format!("algorithm {:?} not accepted", header.alg)));
        }
        let key = self
            .key_for(header.kid.as_deref())
            .ok_or_else(|| refuse(format!("no JWKS key for kid {:?}", header.kid)))?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        let data = decode::<Value>(token, &key, &v).map_err(|e| refuse(e.to_string()))?;
        let sub = data
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refuse("no subject".into()))?;
        Ok(Principal {
            id: format!("oidc:{sub}"),
            roles: roles_of(&data.claims, &self.roles_claim),
            via: Via::Jwt,
            not_after: data.claims.get("exp").and_then(Value::as_u64),
        })
    }
}

/// The known roles named by the (dotted) claim: an array of strings or a space-separated
/// string (the OAuth `scope` form). Unknown names are ignored: an identity provider's token
/// carries roles for many applications.
fn roles_of(claims: &Value, path: &str) -> BTreeSet<Role> {
    let mut v = claims;
    for part in path.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return BTreeSet::new(),
        }
    }
    let names: Vec<&str> = match v {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => s.split_whitespace().collect(),
        _ => Vec::new(),
    };
    names.into_iter().filter_map(|n| n.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_come_from_a_dotted_claim_in_either_form() {
        let c = json!({"realm_access": {"roles": ["reader", "offline_access", "metrics"]},
                       "scope": "openid uploader"});
        let r = roles_of(&c, "realm_access.roles");
        assert_eq!(r, [Role::Reader, Role::Metrics].into_iter().collect());
        assert_eq!(
            roles_of(&c, "scope"),
            [Role::Uploader].into_iter().collect()
        );
        assert!(roles_of(&c, "missing.path").is_empty());
    }
}
