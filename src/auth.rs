//! Bearer tokens and per-probe rate limits. Tokens are stored only as SHA-256 hashes; a presented
//! token is hashed, looked up by digest, and the digest compared in constant time. The probe id
//! always comes from the token, never from the request body.
//!
//! Invariant: a probe token never authorises the query API, and a query token never ingests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;

/// Prefixes make leaked tokens recognisable (and scannable) at a glance.
pub const PROBE_PREFIX: &str = "nqp_";
pub const QUERY_PREFIX: &str = "nqq_";
/// Prefix of admin tokens (drain).
pub const ADMIN_PREFIX: &str = "nqa_";

/// A new random token (256 bits) and its SHA-256 hex digest.
pub fn mint(prefix: &str) -> (String, String) {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = format!("{prefix}{}", hex::encode(raw));
    let digest = sha256_hex(&token);
    (token, digest)
}

pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Probe(String),
    Query(String),
    /// May call the admin endpoints (drain), nothing else.
    Admin(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Malformed,
    Unknown,
    Revoked,
}

struct Entry {
    digest: [u8; 32],
    principal: Principal,
    revoked: bool,
}

/// Token hashes from configuration, indexed by digest.
pub struct TokenBook {
    by_digest: HashMap<[u8; 32], Entry>,
    /// Whether any query token is configured (otherwise the query API is open to non-probes).
    pub query_tokens_configured: bool,
}

fn decode_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let v = hex::decode(hex_digest).ok()?;
    v.try_into().ok()
}

impl TokenBook {
    pub fn from_config(cfg: &Config) -> Self {
        let mut by_digest = HashMap::new();
        for p in &cfg.probes {
            if let Some(d) = decode_digest(p.token_sha256.expose()) {
                by_digest.insert(d, Entry { digest: d, principal: Principal::Probe(p.id.clone()), revoked: p.revoked });
            }
        }
        for q in &cfg.query_tokens {
            if let Some(d) = decode_digest(q.token_sha256.expose()) {
                by_digest
                    .insert(d, Entry { digest: d, principal: Principal::Query(q.name.clone()), revoked: q.revoked });
            }
        }
        for a in &cfg.admin_tokens {
            if let Some(d) = decode_digest(a.token_sha256.expose()) {
                by_digest
                    .insert(d, Entry { digest: d, principal: Principal::Admin(a.name.clone()), revoked: a.revoked });
            }
        }
        Self { by_digest, query_tokens_configured: !cfg.query_tokens.is_empty() }
    }

    /// Resolves an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let h = header.ok_or(AuthError::Missing)?;
        let token = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Malformed)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // The map lookup is keyed by the SHA-256 digest, which reveals nothing usable about the
        // token; the final comparison is constant-time regardless.
        match self.by_digest.get(&digest) {
            Some(e) if bool::from(e.digest.ct_eq(&digest)) => {
                if e.revoked {
                    Err(AuthError::Revoked)
                } else {
                    Ok(e.principal.clone())
                }
            }
            _ => Err(AuthError::Unknown),
        }
    }
}

/// Token bucket per probe, in events.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes `n` events from the probe's bucket, or says how many seconds until it could.
    /// The map only holds configured probes (callers are authenticated first), so it is bounded.
    pub fn take(&self, probe: &str, n: usize) -> Result<(), u64> {
        self.take_at(probe, n, Instant::now())
    }

    /// `take` at the given instant (the clock passed in, so refilling is testable).
    pub fn take_at(&self, probe: &str, n: usize, now: Instant) -> Result<(), u64> {
        let n = n as f64;
        let Ok(mut g) = self.buckets.lock() else {
            return Ok(());
        };
        let (tokens, last) = g.entry(probe.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if n <= *tokens {
            *tokens -= n;
            Ok(())
        } else {
            let wait = if n > self.burst { (n / self.rate).ceil() } else { ((n - *tokens) / self.rate).ceil() };
            Err(wait.max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_authenticate_by_hash() {
        let (t, h) = mint(PROBE_PREFIX);
        assert!(t.starts_with("nqp_"));
        assert_eq!(sha256_hex(&t), h);
        let mut cfg = Config::load_from(None, Vec::new()).unwrap();
        cfg.probes.push(crate::config::ProbeEntry {
            id: "p1".into(),
            token_sha256: h.into(),
            revoked: false,
            labels: Default::default(),
        });
        let book = TokenBook::from_config(&cfg);
        assert_eq!(book.authenticate(Some(&format!("Bearer {t}"))), Ok(Principal::Probe("p1".into())));
        assert_eq!(book.authenticate(Some("Bearer nope")), Err(AuthError::Unknown));
        assert_eq!(book.authenticate(Some("Basic abc")), Err(AuthError::Malformed));
        assert_eq!(book.authenticate(None), Err(AuthError::Missing));
    }

    #[test]
    fn rate_limiter_refills() {
        let r = RateLimiter::new(10.0, 20.0);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
        assert!(r.take_at("p", 20, at(0)).is_ok(), "a full burst");
        assert_eq!(r.take_at("p", 10, at(0)), Err(1), "empty: 10 events need 1 s at 10/s");
        assert!(r.take_at("q", 5, at(0)).is_ok(), "buckets are per probe");
        // half a second refills 5 tokens: 5 pass, a 6th does not
        assert!(r.take_at("p", 5, at(500)).is_ok());
        assert_eq!(r.take_at("p", 1, at(500)), Err(1));
        // 1.5 s later it is full again, never above the burst
        assert!(r.take_at("p", 15, at(2_000)).is_ok());
        assert_eq!(r.take_at("p", 6, at(2_000)), Err(1));
        assert!(r.take_at("p", 20, at(60_000)).is_ok());
        assert_eq!(r.take_at("p", 1, at(60_000)), Err(1), "capped at the burst after a long idle");
        // more than a burst can never pass; the wait says how long n events take at the rate
        assert_eq!(r.take_at("q", 50, at(60_000)), Err(5));
    }
}
