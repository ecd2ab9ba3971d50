//! TOTP per RFC 6238: 160-bit secrets from the OS CSPRNG, 30 s steps, 6
//! digits, one step of clock skew either way, and no step accepted twice:
//! a code from a step at or before the last accepted one is a replay.

use totp_rs::{Algorithm, Secret, TOTP};

pub const STEP_SECONDS: u64 = 30;
pub const DIGITS: usize = 6;
/// Steps of clock skew tolerated either side of now.
pub const SKEW_STEPS: u64 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TotpError {
    #[error("the code is not valid")]
    Invalid,
    #[error("the code was already used; wait for the next one")]
    Replayed,
    #[error("the stored TOTP secret is unreadable")]
    BadSecret,
}

/// What a user needs to enroll an authenticator app.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// Base32 secret (for manual entry), to be stored server-side.
    pub secret_base32: String,
    pub otpauth_uri: String,
    /// The URI as a QR code, PNG.
    pub qr_png: Vec<u8>,
}

/// A new 160-bit secret.
pub fn new_secret() -> String {
    match Secret::generate_secret().to_encoded() {
        Secret::Encoded(text) => text,
        Secret::Raw(_) => unreachable!("to_encoded gives the encoded form"),
    }
}

fn totp(secret_base32: &str, issuer: &str, account: &str) -> Result<TOTP, TotpError> {
    let bytes = Secret::Encoded(secret_base32.to_owned())
        .to_bytes()
        .map_err(|_| TotpError::BadSecret)?;
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        SKEW_STEPS as u8,
        STEP_SECONDS,
        bytes,
        Some(issuer.replace(':', "")),
        account.replace(':', ""),
    )
    .map_err(|_| TotpError::BadSecret)
}

/// A fresh secret with its `otpauth://` URI and QR image. The enrollment is
/// confirmed only once a code from it verifies.
pub fn enroll(issuer: &str, account: &str) -> Result<Enrollment, TotpError> {
    let secret_base32 = new_secret();
    let otpauth_uri = totp(&secret_base32, issuer, account)?.get_url();
    let qr_png = qr_png(&otpauth_uri).map_err(|_| TotpError::BadSecret)?;
    Ok(Enrollment {
        secret_base32,
        otpauth_uri,
        qr_png,
    })
}

/// The step a code matched, if it is valid at `now` (unix seconds) and newer
/// than `last_accepted_step`. Store the returned step as the new last one.
pub fn verify(
    secret_base32: &str,
    code: &str,
    now: u64,
    last_accepted_step: Option<u64>,
) -> Result<u64, TotpError> {
    let code = code.trim().replace(' ', "");
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TotpError::Invalid);
    }
    let totp = totp(secret_base32, "x", "x")?;
    let current = now / STEP_SECONDS;
    let mut matched = None;
    for step in current.saturating_sub(SKEW_STEPS)..=current + SKEW_STEPS {
        let expected = totp.generate(step * STEP_SECONDS);
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) {
            matched = Some(step);
        }
    }
    let step = matched.ok_or(TotpError::Invalid)?;
    if last_accepted_step.is_some_and(|last| step <= last) {
        return Err(TotpError::Replayed);
    }
    Ok(step)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Renders `text` as a QR code PNG: 8 pixels per module, 4-module quiet zone.
pub fn qr_png(text: &str) -> Result<Vec<u8>, String> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| e.to_string())?;
    let modules = code.width();
    let colors = code.to_colors();
    let size = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; size * size];
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (x, y) = ((i % modules + QUIET) * SCALE, (i / modules + QUIET) * SCALE);
            for row in y..y + SCALE {
                pixels[row * size + x..row * size + x + SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, size as u32, size as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};

    use super::*;

    /// RFC 4226/6238 computed here by hand, independently of totp-rs.
    fn reference_code(secret: &[u8], unix_time: u64, digits: u32) -> String {
        let counter = unix_time / STEP_SECONDS;
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
        mac.update(&counter.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let offset = (digest[19] & 0x0f) as usize;
        let binary = u32::from_be_bytes([
            digest[offset] & 0x7f,
            digest[offset + 1],
            digest[offset + 2],
            digest[offset + 3],
        ]);
        format!(
            "{:0width$}",
            binary % 10u32.pow(digits),
            width = digits as usize
        )
    }

    /// Reads the PNG back and decodes its QR code with an independent decoder.
    fn decode_qr(png_bytes: &[u8]) -> String {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the image");
        grids[0].decode().unwrap().1
    }

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    fn rfc_secret_base32() -> String {
        match Secret::Raw(RFC_SECRET.to_vec()).to_encoded() {
            Secret::Encoded(s) => s,
            Secret::Raw(_) => unreachable!(),
        }
    }

    #[test]
    fn the_reference_matches_the_rfc_6238_vectors() {
        // RFC 6238 appendix B, SHA-1, 8 digits.
        for (time, code) in [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
        ] {
            assert_eq!(reference_code(RFC_SECRET, time, 8), code);
        }
    }

    #[test]
    fn codes_verify_within_one_step_and_never_twice() {
        let secret = rfc_secret_base32();
        let now = 1_234_567_890;
        let step = now / STEP_SECONDS;
        let code = reference_code(RFC_SECRET, now, 6);
        assert_eq!(verify(&secret, &code, now, None), Ok(step));
        // The same code (same step) again is a replay, as is an earlier step's.
        assert_eq!(
            verify(&secret, &code, now, Some(step)),
            Err(TotpError::Replayed)
        );
        let previous = reference_code(RFC_SECRET, now - STEP_SECONDS, 6);
        assert_eq!(
            verify(&secret, &previous, now, Some(step)),
            Err(TotpError::Replayed)
        );
        // One step of skew either way is fine; two is not.
        assert_eq!(verify(&secret, &previous, now, None), Ok(step - 1));
        let next = reference_code(RFC_SECRET, now + STEP_SECONDS, 6);
        assert_eq!(verify(&secret, &next, now, Some(step)), Ok(step + 1));
        let too_old = reference_code(RFC_SECRET, now - 2 * STEP_SECONDS, 6);
        assert_eq!(
            verify(&secret, &too_old, now, None),
            Err(TotpError::Invalid)
        );
        assert_eq!(verify(&secret, "12345", now, None), Err(TotpError::Invalid));
        assert_eq!(
            verify(&secret, "abcdef", now, None),
            Err(TotpError::Invalid)
        );
    }

    #[test]
    fn enrollment_gives_a_160_bit_secret_a_uri_and_a_png() {
        let enrollment = enroll("Check-in", "ada@example.org").unwrap();
        let bytes = Secret::Encoded(enrollment.secret_base32.clone())
            .to_bytes()
            .unwrap();
        assert_eq!(bytes.len(), 20);
        assert!(
            enrollment.otpauth_uri.starts_with("otpauth://totp/"),
            "{}",
            enrollment.otpauth_uri
        );
        assert!(
            enrollment
                .otpauth_uri
                .contains(&format!("secret={}", enrollment.secret_base32))
        );
        assert!(enrollment.otpauth_uri.contains("issuer=Check-in"));
        assert_eq!(&enrollment.qr_png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(
            decode_qr(&enrollment.qr_png),
            enrollment.otpauth_uri,
            "the QR code holds the URI"
        );
        assert_ne!(
            enroll("Check-in", "ada@example.org").unwrap().secret_base32,
            enrollment.secret_base32
        );
        // A code computed independently from the enrolled secret verifies.
        let now = 1_800_000_000;
        assert!(
            verify(
                &enrollment.secret_base32,
                &reference_code(&bytes, now, 6),
                now,
                None
            )
            .is_ok()
        );
    }
}
