//! The webhook edge: signature verification (before anything reads the body) and
//! the few envelope fields the inbox indexes. Full typed parsing happens later, in
//! the event loop, off the response path (see `events.rs`).

use std::borrow::Cow;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub.
pub const MAX_PAYLOAD_BYTES: usize = 25 * 1024 * 1024;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const EVENT_HEADER: &str = "x-github-event";
pub const DELIVERY_HEADER: &str = "x-github-delivery";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not of the form sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body for any configured webhook secret")]
    Mismatch,
}

/// The webhook secrets accepted: the current one first, then older ones during a
/// rotation. Each is kept as an HMAC state with the key already absorbed, so a
/// delivery costs one clone and one pass over the body.
#[derive(Clone)]
pub struct WebhookSecrets {
    keyed: Vec<HmacSha256>,
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecrets([REDACTED; {}])", self.keyed.len())
    }
}

impl WebhookSecrets {
    pub fn new(secrets: &[SecretString]) -> Self {
        let keyed = secrets
            .iter()
            .map(|s| {
                HmacSha256::new_from_slice(s.expose_secret().as_bytes())
                    .expect("HMAC accepts keys of any length")
            })
            .collect();
        Self { keyed }
    }

    /// Checks `X-Hub-Signature-256` over the raw body in constant time.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_sig = header
            .strip_prefix(b"sha256=")
            .ok_or(SignatureError::Malformed)?;
        let mut expected = [0u8; 32];
        hex::decode_to_slice(hex_sig, &mut expected).map_err(|_| SignatureError::Malformed)?;
        let matched = self.keyed.iter().any(|keyed| {
            let mut mac = keyed.clone();
            mac.update(body);
            mac.verify_slice(&expected).is_ok()
        });
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// `sha256=<hex>` for `body` under `secret`: what GitHub sends, and what tests and
/// the simulator use to sign deliveries.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A delivery id or event name we are willing to store: short printable ASCII.
/// GitHub's are a GUID and a snake_case word.
pub fn valid_header_token(value: &str, max_len: usize) -> bool {
    !value.is_empty() && value.len() <= max_len && value.bytes().all(|b| b.is_ascii_graphic())
}

/// The envelope fields the inbox keeps in columns. Borrowed where the JSON allows,
/// and every other field skipped, so reading it allocates almost nothing.
#[derive(Debug, Default, Deserialize)]
pub struct Envelope<'a> {
    #[serde(borrow, default)]
    pub action: Option<Cow<'a, str>>,
    #[serde(default)]
    pub installation: Option<IdOnly>,
    #[serde(borrow, default)]
    pub repository: Option<RepositoryName<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct IdOnly {
    pub id: i64,
}

#[derive(Debug, Deserialize)]
pub struct RepositoryName<'a> {
    #[serde(borrow)]
    pub full_name: Cow<'a, str>,
}

impl<'a> Envelope<'a> {
    /// `None` when the body is not a JSON object of the expected shape. Such a
    /// delivery is still stored (it is signed, so it is GitHub's), and the event loop
    /// parks it with the precise parse error.
    pub fn read(body: &'a [u8]) -> Option<Envelope<'a>> {
        serde_json::from_slice(body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &[&str]) -> WebhookSecrets {
        let owned: Vec<SecretString> = list.iter().map(|s| SecretString::from(*s)).collect();
        WebhookSecrets::new(&owned)
    }

    #[test]
    fn github_documented_example_verifies() {
        // The example from GitHub's "Validating webhook deliveries" page.
        let body = b"Hello, World!";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(b"It's a Secret to Everybody", body), sig);
        let s = secrets(&["It's a Secret to Everybody"]);
        assert_eq!(s.verify(Some(sig.as_bytes()), body), Ok(()));
    }

    #[test]
    fn wrong_missing_and_malformed_signatures_are_told_apart() {
        let s = secrets(&["secret"]);
        let body = br#"{"a":1}"#;
        let good = sign(b"secret", body);
        assert_eq!(s.verify(None, body), Err(SignatureError::Missing));
        assert_eq!(
            s.verify(Some(b"sha1=abc"), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            s.verify(Some(b"sha256=zz"), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            s.verify(Some(sign(b"other", body).as_bytes()), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            s.verify(Some(good.as_bytes()), br#"{"a":2}"#),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn previous_secret_still_verifies_during_rotation() {
        let s = secrets(&["new", "old"]);
        let body = b"{}";
        assert!(s.verify(Some(sign(b"old", body).as_bytes()), body).is_ok());
        assert!(s.verify(Some(sign(b"new", body).as_bytes()), body).is_ok());
        assert!(
            s.verify(Some(sign(b"older", body).as_bytes()), body)
                .is_err()
        );
    }

    #[test]
    fn debug_does_not_show_secrets() {
        let s = secrets(&["canary-secret"]);
        assert!(!format!("{s:?}").contains("canary"));
    }

    #[test]
    fn envelope_reads_only_what_it_needs() {
        let body = br#"{"action":"labeled","issue":{"number":1,"body":"x\"y"},
            "installation":{"id":42,"node_id":"x"},"repository":{"full_name":"o/r","id":1}}"#;
        let env = Envelope::read(body).unwrap();
        assert_eq!(env.action.as_deref(), Some("labeled"));
        assert_eq!(env.installation.unwrap().id, 42);
        assert_eq!(env.repository.unwrap().full_name, "o/r");
        let env = Envelope::read(br#"{"zen":"hi","installation":null}"#).unwrap();
        assert!(env.action.is_none() && env.installation.is_none() && env.repository.is_none());
        assert!(Envelope::read(b"not json").is_none());
    }

    #[test]
    fn header_tokens() {
        assert!(valid_header_token(
            "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            128
        ));
        assert!(!valid_header_token("", 128));
        assert!(!valid_header_token("has space", 128));
        assert!(!valid_header_token(&"a".repeat(129), 128));
    }
}
