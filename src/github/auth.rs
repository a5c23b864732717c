//! GitHub App authentication: the App's credentials, the short-lived App JWT
//! signed with its private key, and the per-installation token cache.
//!
//! Nothing here performs HTTP: the token exchange itself lives in
//! [`crate::github::client`], which owns a [`TokenCache`] and hands it the
//! exchange as a closure. Secrets stay in [`SecretString`]s; no `Debug`,
//! `Display` or log line in this module shows the key, a JWT or a token.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::clock::SharedClock;

/// How far the JWT's `iat` is backdated, to absorb clock drift between this
/// machine and GitHub (GitHub's documentation recommends 60 seconds).
pub const JWT_BACKDATE: Duration = Duration::seconds(60);

/// How long after "now" the JWT expires. GitHub rejects an `exp` more than
/// 10 minutes in the future; 9 minutes stays safely under that cap.
pub const JWT_LIFETIME: Duration = Duration::minutes(9);

/// By default an installation token is refreshed once it has 5 minutes or less
/// left, so a caller never starts work with a token about to expire.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::minutes(5);

/// What the user is told to check when the private key is unusable.
const KEY_HINT: &str = "check MISSIONS_PRIVATE_KEY_PATH / MISSIONS_PRIVATE_KEY: they must hold \
     the App's private key as GitHub issued it (a PEM file starting with \
     \"-----BEGIN RSA PRIVATE KEY-----\"; PKCS#8 \"-----BEGIN PRIVATE KEY-----\" works too)";

/// A GitHub App's identity: its numeric id and its PEM-encoded private key.
#[derive(Clone)]
pub struct AppCredentials {
    pub app_id: u64,
    /// PEM text of the App's RSA private key (PKCS#1 as GitHub issues it, or PKCS#8).
    pub private_key: SecretString,
}

impl AppCredentials {
    pub fn new(app_id: u64, private_key: SecretString) -> Self {
        Self {
            app_id,
            private_key,
        }
    }
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// Why the App could not authenticate before any request was made.
/// Neither variant carries key material: reasons are fixed descriptions.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the private key of GitHub App {app_id} is not usable ({reason}); {KEY_HINT}")]
    InvalidPrivateKey { app_id: u64, reason: &'static str },
    #[error("could not sign the JWT of GitHub App {app_id} ({reason})")]
    SignJwt { app_id: u64, reason: &'static str },
}

/// The claims GitHub expects in an App JWT.
#[derive(Debug, Serialize)]
struct AppClaims {
    iat: i64,
    exp: i64,
    iss: String,
}

/// Signs App JWTs (RS256) with the App's private key, parsed once at start-up.
pub struct AppJwtSigner {
    app_id: u64,
    key: EncodingKey,
    clock: SharedClock,
}

impl AppJwtSigner {
    /// Parses the PEM and proves it can sign, so that a bad key is reported at
    /// start-up rather than on the first webhook.
    pub fn new(credentials: &AppCredentials, clock: SharedClock) -> Result<Self, AuthError> {
        let app_id = credentials.app_id;
        let pem = normalize_pem(credentials.private_key.expose_secret());
        if pem.is_empty() {
            return Err(AuthError::InvalidPrivateKey {
                app_id,
                reason: "it is empty",
            });
        }
        if !pem.contains("-----BEGIN") {
            return Err(AuthError::InvalidPrivateKey {
                app_id,
                reason: "it is not PEM text (no \"-----BEGIN\" line)",
            });
        }
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
            AuthError::InvalidPrivateKey {
                app_id,
                reason: describe_key_error(e.kind()),
            }
        })?;
        let signer = Self { app_id, key, clock };
        // jsonwebtoken only unwraps the PEM here; the RSA key itself is decoded
        // when signing. Sign once now so a malformed key fails at start-up.
        signer.sign().map_err(|_| AuthError::InvalidPrivateKey {
            app_id,
            reason: "the PEM block does not hold a valid RSA private key",
        })?;
        Ok(signer)
    }

    pub fn app_id(&self) -> u64 {
        self.app_id
    }

    /// A fresh App JWT: `iat` = now − 60 s, `exp` = now + 9 min, `iss` = the App id.
    pub fn sign(&self) -> Result<SecretString, AuthError> {
        let now = self.clock.now();
        let claims = AppClaims {
            iat: (now - JWT_BACKDATE).unix_timestamp(),
            exp: (now + JWT_LIFETIME).unix_timestamp(),
            iss: self.app_id.to_string(),
        };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| AuthError::SignJwt {
                app_id: self.app_id,
                reason: describe_key_error(e.kind()),
            })?;
        Ok(SecretString::from(jwt))
    }
}

impl fmt::Debug for AppJwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppJwtSigner")
            .field("app_id", &self.app_id)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Keys pasted into an environment variable often arrive on one line with
/// literal `\n` escapes; turn those back into newlines. Surrounding whitespace
/// is dropped.
fn normalize_pem(pem: &str) -> String {
    let pem = pem.trim();
    if !pem.contains('\n') && pem.contains("\\n") {
        pem.replace("\\n", "\n").trim().to_owned()
    } else {
        pem.to_owned()
    }
}

/// A fixed description of a jsonwebtoken key error: the library's own messages
/// are not shown, so that no fragment of the key can end up in an error.
fn describe_key_error(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidKeyFormat => "the PEM block is not an RSA private key",
        ErrorKind::InvalidRsaKey(_) | ErrorKind::RsaFailedSigning | ErrorKind::Signing(_) => {
            "the RSA key could not be used for signing"
        }
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) => "the PEM text is malformed",
        _ => "unexpected error from the JWT library",
    }
}

/// An installation access token and when GitHub said it expires.
#[derive(Clone)]
pub struct InstallationToken {
    pub token: SecretString,
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Anything the [`TokenCache`] can hold: it only needs to know when it expires.
pub trait Expiring {
    fn expires_at(&self) -> OffsetDateTime;
}

impl Expiring for InstallationToken {
    fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }
}

type Slot<T> = Arc<tokio::sync::Mutex<Option<T>>>;

/// Per-installation cache of expiring credentials.
///
/// An entry is reused while it has more than the refresh margin left and is
/// refreshed otherwise. Each installation has its own async mutex, held across
/// the refresh, so concurrent callers for one installation cause exactly one
/// exchange while other installations proceed independently. If a refresh
/// fails (or its future is dropped), the slot is left as it was and the next
/// caller tries again.
pub struct TokenCache<T> {
    clock: SharedClock,
    refresh_margin: Duration,
    slots: Mutex<HashMap<u64, Slot<T>>>,
}

impl<T: Clone + Expiring> TokenCache<T> {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Sets how long before expiry an entry is refreshed; negative counts as zero.
    /// A margin of an hour or more (GitHub's token lifetime) refreshes on every call.
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin.max(Duration::ZERO);
        self
    }

    pub fn refresh_margin(&self) -> Duration {
        self.refresh_margin
    }

    /// The cached entry for `id` if it is still fresh, otherwise the result of
    /// `refresh`, which is then cached. `refresh` runs at most once at a time
    /// per id; callers arriving meanwhile wait and then reuse its result.
    pub async fn get_or_refresh<F, Fut, E>(&self, id: u64, refresh: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let slot = self.slot(id);
        let mut entry = slot.lock().await;
        if let Some(cached) = entry.as_ref().filter(|cached| self.is_fresh(cached)) {
            return Ok(cached.clone());
        }
        let fresh = refresh().await?;
        *entry = Some(fresh.clone());
        Ok(fresh)
    }

    /// Drops the entry for `id` (e.g. when the installation was deleted or its
    /// token was rejected); the next call exchanges again.
    pub fn forget(&self, id: u64) {
        self.slots.lock().expect("token cache lock").remove(&id);
    }

    /// How many installations have a slot (fresh or not).
    pub fn len(&self) -> usize {
        self.slots.lock().expect("token cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_fresh(&self, entry: &T) -> bool {
        entry.expires_at() - self.clock.now() > self.refresh_margin
    }

    fn slot(&self, id: u64) -> Slot<T> {
        let mut slots = self.slots.lock().expect("token cache lock");
        slots.entry(id).or_default().clone()
    }
}

impl<T> fmt::Debug for TokenCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let installations = self.slots.lock().map(|s| s.len()).unwrap_or_default();
        f.debug_struct("TokenCache")
            .field("refresh_margin", &self.refresh_margin)
            .field("installations", &installations)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn normalize_pem_unescapes_one_line_keys() {
        assert_eq!(normalize_pem("  a\\nb\\n "), "a\nb");
        assert_eq!(normalize_pem("a\nb\\nc"), "a\nb\\nc");
    }

    #[test]
    fn garbage_key_is_a_clear_error_without_the_key() {
        let creds = AppCredentials::new(7, SecretString::from("not-a-key-SECRETSTUFF".to_owned()));
        let err = AppJwtSigner::new(&creds, crate::clock::system()).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("MISSIONS_PRIVATE_KEY_PATH"), "{shown}");
        assert!(!shown.contains("SECRETSTUFF"), "{shown}");
    }

    #[test]
    fn pem_shaped_garbage_is_rejected_at_construction() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END RSA PRIVATE KEY-----\n";
        let creds = AppCredentials::new(7, SecretString::from(pem.to_owned()));
        let err = AppJwtSigner::new(&creds, crate::clock::system()).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("MISSIONS_PRIVATE_KEY"), "{shown}");
        assert!(!shown.contains("MIIBOgIBAAJBAKj34GkxFhD9"), "{shown}");
    }

    #[derive(Clone)]
    struct Entry(OffsetDateTime, usize);
    impl Expiring for Entry {
        fn expires_at(&self) -> OffsetDateTime {
            self.0
        }
    }

    #[tokio::test]
    async fn cache_reuses_until_margin_and_keeps_slot_on_error() {
        let clock = ManualClock::starting_now();
        let cache = TokenCache::<Entry>::new(Arc::new(clock.clone()));
        let calls = AtomicUsize::new(0);
        let refresh = || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(Entry(clock.now() + Duration::hours(1), n))
        };
        assert_eq!(cache.get_or_refresh(1, refresh).await.unwrap().1, 0);
        assert_eq!(cache.get_or_refresh(1, refresh).await.unwrap().1, 0);
        clock.advance(Duration::minutes(55));
        // Exactly 5 minutes left is not "more than the margin": refresh.
        assert!(cache.get_or_refresh(1, || async { Err(()) }).await.is_err());
        assert_eq!(cache.get_or_refresh(1, refresh).await.unwrap().1, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        cache.forget(1);
        assert!(cache.is_empty());
    }
}
