//! Helpers for the account tests: a small REST client, and TOTP codes
//! computed here, independently of the server's `totp-rs` (RFC 4226/6238
//! written out, checked against the RFC's own test vector).

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

/// HOTP (RFC 4226) with `digits` digits.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).unwrap();
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = (hash[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ]);
    format!(
        "{:0width$}",
        binary % 10u32.pow(digits),
        width = digits as usize
    )
}

/// RFC 4648 base32 (no padding needed), as authenticator apps read it.
pub fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits: u64 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = ALPHABET
            .iter()
            .position(|&a| a == c.to_ascii_uppercase())
            .expect("base32 character") as u64;
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

/// The secret in an `otpauth://totp/...?secret=...` URI.
pub fn secret_from_uri(uri: &str) -> Vec<u8> {
    let query = uri.split_once('?').expect("otpauth URI has a query").1;
    let secret = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("secret="))
        .expect("otpauth URI has a secret");
    base32_decode(secret)
}

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The 6-digit TOTP code for the 30-second step `offset` steps from now.
pub fn totp_now(secret: &[u8], offset: i64) -> String {
    let step = (unix_secs() / 30) as i64 + offset;
    hotp(secret, step as u64, 6)
}

/// A REST client for one server.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    client: reqwest::Client,
}

/// A response: status and JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
}

impl Reply {
    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(
            (200..300).contains(&self.status),
            "expected success, got {} {}",
            self.status,
            self.body
        );
        self.body
    }

    /// The error code of an error response.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

impl Api {
    /// From the websocket URL `ws://ADDR/sync`.
    pub fn new(sync_url: &str) -> Self {
        Self::with_client(sync_url, crate::http_client(None))
    }

    /// From `wss://ADDR/sync`, trusting the CA in `ca_pem`.
    pub fn trusting(sync_url: &str, ca_pem: &str) -> Self {
        Self::with_client(sync_url, crate::http_client(Some(ca_pem)))
    }

    fn with_client(sync_url: &str, client: reqwest::Client) -> Self {
        let base = sync_url
            .replacen("wss://", "https://", 1)
            .replacen("ws://", "http://", 1)
            .trim_end_matches("/sync")
            .to_owned();
        Self { base, client }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("server answers");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            retry_after,
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn login(&self, email: &str, password: &str, device: &str) -> Reply {
        self.post(
            "/api/auth/login",
            None,
            json!({ "email": email, "password": password, "device_name": device, "app_version": "test-1" }),
        )
        .await
    }
}

/// What a first sign-in with enrollment gave.
pub struct Enrolled {
    pub secret: Vec<u8>,
    /// The TOTP step whose code confirmed the enrollment (now used up).
    pub step: u64,
    pub session: Value,
    pub recovery_codes: Vec<String>,
}

impl Enrolled {
    pub fn access(&self) -> &str {
        self.session["access_token"].as_str().unwrap()
    }
}

/// Signs in for the first time, enrolling an authenticator (the current step's code).
pub async fn enroll(api: &Api, email: &str, password: &str, device: &str) -> Enrolled {
    let login = api.login(email, password, device).await.ok();
    assert_eq!(login["status"], "enrollment_required", "{login}");
    let challenge = login["challenge"].as_str().unwrap().to_owned();
    let started = api
        .post(
            "/api/auth/enroll/start",
            None,
            json!({ "challenge": challenge }),
        )
        .await
        .ok();
    let secret = secret_from_uri(started["otpauth_uri"].as_str().unwrap());
    let step = unix_secs() / 30;
    let confirmed = api
        .post(
            "/api/auth/enroll/confirm",
            None,
            json!({ "challenge": challenge, "code": hotp(&secret, step, 6) }),
        )
        .await
        .ok();
    Enrolled {
        secret,
        step,
        session: confirmed["session"].clone(),
        recovery_codes: confirmed["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_test_vectors() {
        // RFC 4226 appendix D and RFC 6238 appendix B (SHA-1, T = 59 s).
        let secret = b"12345678901234567890";
        assert_eq!(hotp(secret, 0, 6), "755224");
        assert_eq!(hotp(secret, 9, 6), "520489");
        assert_eq!(hotp(secret, 59 / 30, 8), "94287082");
        assert_eq!(hotp(secret, 1111111109 / 30, 8), "07081804");
        assert_eq!(base32_decode("GEZDGNBVGY3TQOJQ"), b"1234567890");
    }
}
