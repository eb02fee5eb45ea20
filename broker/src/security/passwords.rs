//! Password checking: argon2id hashes, a cache of credentials already checked, and a limit on
//! failed attempts per source address.
//!
//! Cost: argon2id with m = 19 MiB, t = 2, p = 1 (OWASP's first recommendation), about 20-40 ms
//! per check on one core. Checks run on the blocking pool, at most half the cores at once, so
//! a flood of bad passwords cannot starve the tokio workers. A credential that passed is
//! remembered by its SHA-256 (with the user record's revision, so a changed or deleted user
//! is checked again); every request carries the header, and only the first is slow.
//!
//! Invariant: no password and no unsalted digest of one is ever stored in the metadata; an
//! unknown user costs the same check as a known one (a dummy hash), so timing does not tell
//! which names exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// argon2id cost: memory in KiB, iterations, lanes.
pub const ARGON2_M_KIB: u32 = 19_456;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;
/// Failed attempts one source may make per [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Bounds on the two maps.
const MAX_CACHED: usize = 10_000;
const MAX_SOURCES: usize = 4_096;
/// Shortest and longest password accepted at creation.
pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1_024;

/// The cost as `strata user list` shows it.
pub fn mechanism() -> String {
    format!("argon2id m={ARGON2_M_KIB} t={ARGON2_T} p={ARGON2_P}")
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).expect("valid argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with a fresh random salt into a PHC string (`$argon2id$v=19$...`).
/// Slow: call it on the blocking pool.
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| format!("cannot make a salt: {e}"))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `stored`. Slow: call it on the blocking pool.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Checks a new password against the rules, with the reason.
pub fn validate_password(password: &str) -> Result<(), String> {
    if password.len() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password is too short: it needs at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "the password is too long: at most {MAX_PASSWORD_LEN} bytes"
        ));
    }
    Ok(())
}

/// Why a password check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Wrong,
    TooManyFailures {
        source: IpAddr,
        retry_after: Duration,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Wrong => f.write_str("wrong user name or password"),
            Failure::TooManyFailures { source, retry_after } => write!(
                f,
                "too many failed authentications from {source} (more than {MAX_FAILURES} in {} s); try again in {} s",
                FAILURE_WINDOW.as_secs(),
                retry_after.as_secs().max(1)
            ),
        }
    }
}

/// What a user record offers the check: its hash and its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub hash: String,
    pub revision: i64,
}

#[derive(Debug)]
pub struct Passwords {
    permits: Semaphore,
    checked: Mutex<HashMap<[u8; 32], i64>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    dummy: OnceLock<String>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl Passwords {
    pub fn new() -> Passwords {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Passwords {
            permits: Semaphore::new((cores / 2).max(1)),
            checked: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            dummy: OnceLock::new(),
        }
    }

    /// Checks `password` for `user` (`stored`: its record, `None` when there is no such user),
    /// from `source`.
    pub async fn check(
        &self,
        source: Option<IpAddr>,
        user: &str,
        password: &str,
        stored: Option<Stored>,
        now: Instant,
    ) -> Result<(), Failure> {
        if let Some(ip) = source {
            self.refuse_if_limited(ip, now)?;
        }
        let digest = digest(user, password);
        if let Some(s) = &stored {
            if self.checked.lock().get(&digest) == Some(&s.revision) {
                return Ok(());
            }
        }
        let hash = match &stored {
            Some(s) => s.hash.clone(),
            None => self.dummy().to_string(),
        };
        let ok = {
            let _permit = self.permits.acquire().await.map_err(|_| Failure::Wrong)?;
            let password = password.to_string();
            tokio::task::spawn_blocking(move || verify(&password, &hash))
                .await
                .unwrap_or(false)
        };
        match stored {
            Some(s) if ok => {
                let mut checked = self.checked.lock();
                if checked.len() >= MAX_CACHED {
                    checked.clear();
                }
                checked.insert(digest, s.revision);
                Ok(())
            }
            _ => {
                if let Some(ip) = source {
                    self.record_failure(ip, now);
                }
                Err(Failure::Wrong)
            }
        }
    }

    fn dummy(&self) -> &str {
        self.dummy
            .get_or_init(|| hash("strata-dummy-password").unwrap_or_default())
    }

    fn refuse_if_limited(&self, ip: IpAddr, now: Instant) -> Result<(), Failure> {
        let failures = self.failures.lock();
        match failures.get(&ip) {
            Some((start, count))
                if *count >= MAX_FAILURES && now.duration_since(*start) < FAILURE_WINDOW =>
            {
                Err(Failure::TooManyFailures {
                    source: ip,
                    retry_after: FAILURE_WINDOW - now.duration_since(*start),
                })
            }
            _ => Ok(()),
        }
    }

    fn record_failure(&self, ip: IpAddr, now: Instant) {
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_SOURCES && !failures.contains_key(&ip) {
            failures.retain(|_, (start, _)| now.duration_since(*start) < FAILURE_WINDOW);
            if failures.len() >= MAX_SOURCES {
                return;
            }
        }
        let entry = failures.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 == MAX_FAILURES {
            tracing::warn!(target: "strata::audit", source = %ip, failures = MAX_FAILURES, "refusing further authentications from this source for a minute");
        }
    }
}

fn digest(user: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0u8]);
    h.update(password.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_and_verify() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert_ne!(a, b, "each hash has its own salt");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(verify("correct horse", &a));
        assert!(!verify("wrong horse", &a));
        assert!(!verify("correct horse", "not a hash"));
    }

    #[tokio::test]
    async fn failures_are_limited_per_source_and_a_changed_record_is_checked_again() {
        let p = Passwords::new();
        let stored = Stored {
            hash: hash("s3cret-pass").unwrap(),
            revision: 5,
        };
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(
            p.check(Some(ip), "alice", "s3cret-pass", Some(stored.clone()), t0)
                .await,
            Ok(())
        );
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                p.check(Some(ip), "alice", "nope", Some(stored.clone()), t0)
                    .await,
                Err(Failure::Wrong)
            );
        }
        let limited = p
            .check(Some(ip), "alice", "s3cret-pass", Some(stored.clone()), t0)
            .await;
        assert!(
            matches!(limited, Err(Failure::TooManyFailures { .. })),
            "{limited:?}"
        );
        assert!(limited
            .unwrap_err()
            .to_string()
            .contains("too many failed authentications from 10.0.0.1"));
        assert_eq!(
            p.check(
                Some(other),
                "alice",
                "s3cret-pass",
                Some(stored.clone()),
                t0
            )
            .await,
            Ok(()),
            "another source is not limited"
        );
        let later = t0 + FAILURE_WINDOW;
        assert_eq!(
            p.check(
                Some(ip),
                "alice",
                "s3cret-pass",
                Some(stored.clone()),
                later
            )
            .await,
            Ok(()),
            "the window passes"
        );
        // The cached credential does not outlive a change of the record.
        let changed = Stored {
            hash: hash("another-pass").unwrap(),
            revision: 9,
        };
        assert_eq!(
            p.check(None, "alice", "s3cret-pass", Some(changed), later)
                .await,
            Err(Failure::Wrong)
        );
        assert_eq!(
            p.check(None, "ghost", "s3cret-pass", None, later).await,
            Err(Failure::Wrong)
        );
    }
}
