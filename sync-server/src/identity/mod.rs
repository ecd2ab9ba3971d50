//! Sign-in building blocks, without IO: password hashing (Argon2id), TOTP
//! (RFC 6238, enrollment with an `otpauth://` URI and a QR image, replay
//! refusal), single-use recovery codes, throttling of failed attempts,
//! session token rules, and burst detection for security alerts. The REST
//! endpoints (`crate::api`) do the IO around these.

pub mod password;
pub mod recovery;
pub mod session;
pub mod threat;
pub mod throttle;
pub mod totp;
