//! Sign-in building blocks, without IO: password hashing (Argon2id), TOTP
//! (RFC 6238, enrollment with an `otpauth://` URI and a QR image, replay
//! refusal), single-use recovery codes, and throttling of failed attempts.
//! The REST endpoints and the account tables build on these.

pub mod password;
pub mod recovery;
pub mod throttle;
pub mod totp;
