//! Certificate serial numbers as operators paste them.
//!
//! Tools print the same serial in different notations: SPIRE (`spire-server
//! x509 ...`, its logs) prints decimal, `openssl x509 -text` prints
//! colon-separated hex, `openssl x509 -serial` and most APIs print hex.
//! [`parse_serial`] accepts the three forms that cannot be confused:
//!
//! | form | example | read as |
//! |---|---|---|
//! | decimal digits only | `1234567890` | decimal, as SPIRE prints it |
//! | `0x` (or `0X`) then hex digits | `0x499602d2` | hex |
//! | hex pairs separated by `:` | `49:96:02:d2` | hex, as `openssl x509 -text` prints it |
//!
//! Anything else is a [`SerialError`]. In particular bare hex with letters
//! (`499602d2`) is refused rather than read as hex: the same notation
//! without letters (`1234`) would be decimal, so an operator pasting hex
//! from `openssl x509 -serial` would otherwise revoke another certificate
//! whenever the serial happens to hold only digits.
//!
//! ```
//! use zt_core::serial::parse_serial;
//!
//! assert_eq!(parse_serial("1234567890")?, vec![0x49, 0x96, 0x02, 0xd2]);
//! assert_eq!(parse_serial("0x499602d2")?, vec![0x49, 0x96, 0x02, 0xd2]);
//! assert_eq!(parse_serial("49:96:02:D2")?, vec![0x49, 0x96, 0x02, 0xd2]);
//! assert!(parse_serial("499602d2").is_err());
//! # Ok::<(), zt_core::serial::SerialError>(())
//! ```

/// The longest serial accepted, in bytes. RFC 5280 allows 20; some CAs
/// write a few more, so the bound only keeps parsing cheap.
pub const MAX_SERIAL_LEN: usize = 64;

/// The forms [`parse_serial`] accepts, for error messages.
pub const ACCEPTED_FORMS: &str = "decimal digits (as SPIRE prints serials, e.g. `1234567890`), \
    hex with a `0x` prefix (e.g. `0x499602d2`), or colon-separated hex pairs \
    (as `openssl x509 -text` prints them, e.g. `49:96:02:d2`)";

/// Why a serial number was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SerialError {
    /// The text is empty.
    #[error("is empty; write {ACCEPTED_FORMS}")]
    Empty,
    /// The value is zero, which no certificate has.
    #[error("is zero, which no certificate has")]
    Zero,
    /// The text is none of the accepted forms (for example bare hex with
    /// letters, which could be mistaken for decimal).
    #[error("is ambiguous or not a serial; write {ACCEPTED_FORMS}")]
    Ambiguous,
    /// A `0x` form holds a character that is not a hex digit.
    #[error("has `{found}` after `0x`, which is not a hex digit")]
    BadHexDigit {
        /// The offending character.
        found: char,
    },
    /// A colon-hex form has a group that is not one or two hex digits.
    #[error(
        "has the group `{group}`, which is not one or two hex digits; write pairs such as `49:96:02:d2`"
    )]
    BadColonGroup {
        /// The offending group.
        group: String,
    },
    /// The serial is longer than [`MAX_SERIAL_LEN`] bytes.
    #[error("is longer than {MAX_SERIAL_LEN} bytes")]
    TooLong,
}

/// Parses a serial in one of the [accepted forms](self) into canonical
/// big-endian bytes (no leading zero bytes), the form
/// [`VerifiedSvid::serial`](crate::x509::VerifiedSvid::serial) gives.
///
/// # Errors
///
/// A [`SerialError`] naming what was wrong and the accepted forms.
pub fn parse_serial(text: &str) -> Result<Vec<u8>, SerialError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SerialError::Empty);
    }
    let bytes = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        parse_prefixed_hex(hex)?
    } else if text.contains(':') {
        parse_colon_hex(text)?
    } else if text.bytes().all(|b| b.is_ascii_digit()) {
        parse_decimal(text)?
    } else {
        return Err(SerialError::Ambiguous);
    };
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let canonical = &bytes[start..];
    if canonical.is_empty() {
        return Err(SerialError::Zero);
    }
    if canonical.len() > MAX_SERIAL_LEN {
        return Err(SerialError::TooLong);
    }
    Ok(canonical.to_vec())
}

/// Formats canonical big-endian serial bytes in decimal, as SPIRE prints
/// serials (`0` for no bytes).
pub fn serial_to_decimal(serial: &[u8]) -> String {
    // Repeated division of the big-endian number by 10.
    let mut number: Vec<u8> = serial.iter().copied().skip_while(|&b| b == 0).collect();
    let mut digits = Vec::new();
    while !number.is_empty() {
        let mut remainder = 0u32;
        for byte in &mut number {
            let value = (remainder << 8) | u32::from(*byte);
            // value < 10 * 256, so the quotient fits a byte.
            *byte = u8::try_from(value / 10).unwrap_or(u8::MAX);
            remainder = value % 10;
        }
        // remainder < 10.
        digits.push(b'0' + u8::try_from(remainder).unwrap_or(0));
        let start = number.iter().position(|&b| b != 0).unwrap_or(number.len());
        number.drain(..start);
    }
    if digits.is_empty() {
        return "0".to_owned();
    }
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

fn hex_value(c: char) -> Option<u8> {
    c.to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn parse_prefixed_hex(hex: &str) -> Result<Vec<u8>, SerialError> {
    if hex.is_empty() {
        return Err(SerialError::Empty);
    }
    if hex.len() > 2 * MAX_SERIAL_LEN + 2 {
        return Err(SerialError::TooLong);
    }
    let mut nibbles = Vec::with_capacity(hex.len() + 1);
    for c in hex.chars() {
        nibbles.push(hex_value(c).ok_or(SerialError::BadHexDigit { found: c })?);
    }
    if nibbles.len() % 2 == 1 {
        nibbles.insert(0, 0);
    }
    Ok(nibbles.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

fn parse_colon_hex(text: &str) -> Result<Vec<u8>, SerialError> {
    if text.len() > 3 * MAX_SERIAL_LEN + 3 {
        return Err(SerialError::TooLong);
    }
    text.split(':')
        .map(|group| {
            let bad = || SerialError::BadColonGroup {
                group: group.to_owned(),
            };
            if group.is_empty() || group.chars().count() > 2 {
                return Err(bad());
            }
            group
                .chars()
                .try_fold(0u8, |acc, c| hex_value(c).map(|v| (acc << 4) | v))
                .ok_or_else(bad)
        })
        .collect()
}

fn parse_decimal(digits: &str) -> Result<Vec<u8>, SerialError> {
    // 10^155 > 256^64: more significant digits cannot fit.
    if digits.trim_start_matches('0').len() > 155 {
        return Err(SerialError::TooLong);
    }
    // Big-endian bytes; multiply by 10 and add each digit.
    let mut number: Vec<u8> = Vec::new();
    for b in digits.bytes() {
        let mut carry = u32::from(b - b'0');
        for byte in number.iter_mut().rev() {
            let value = u32::from(*byte) * 10 + carry;
            *byte = (value & 0xff) as u8;
            carry = value >> 8;
        }
        while carry > 0 {
            number.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_digits_are_decimal_as_spire_prints_them() {
        assert_eq!(parse_serial("10").unwrap(), vec![10]);
        assert_eq!(parse_serial("256").unwrap(), vec![1, 0]);
        assert_eq!(parse_serial(" 007 ").unwrap(), vec![7]);
        // 2^64 + 1
        assert_eq!(
            parse_serial("18446744073709551617").unwrap(),
            vec![1, 0, 0, 0, 0, 0, 0, 0, 1]
        );
    }

    #[test]
    fn prefixed_and_colon_hex_are_hex() {
        assert_eq!(parse_serial("0x10").unwrap(), vec![0x10]);
        assert_eq!(parse_serial("0XaBc").unwrap(), vec![0x0a, 0xbc]);
        assert_eq!(parse_serial("00:3a:9F:01").unwrap(), vec![0x3a, 0x9f, 0x01]);
        assert_eq!(parse_serial("a:b").unwrap(), vec![0x0a, 0x0b]);
    }

    #[test]
    fn bare_hex_with_letters_is_refused_as_ambiguous_naming_the_forms() {
        let err = parse_serial("3a9f01").unwrap_err();
        assert_eq!(err, SerialError::Ambiguous);
        let text = err.to_string();
        assert!(text.contains("decimal") && text.contains("0x") && text.contains("colon"));
    }

    #[test]
    fn malformed_serials_are_typed_errors() {
        assert_eq!(parse_serial("").unwrap_err(), SerialError::Empty);
        assert_eq!(parse_serial("0x").unwrap_err(), SerialError::Empty);
        assert_eq!(parse_serial("0").unwrap_err(), SerialError::Zero);
        assert_eq!(parse_serial("00:00").unwrap_err(), SerialError::Zero);
        assert_eq!(
            parse_serial("0x3g").unwrap_err(),
            SerialError::BadHexDigit { found: 'g' }
        );
        assert!(matches!(
            parse_serial("3a::01").unwrap_err(),
            SerialError::BadColonGroup { .. }
        ));
        assert!(matches!(
            parse_serial("3a9:01").unwrap_err(),
            SerialError::BadColonGroup { .. }
        ));
        assert_eq!(parse_serial("-5").unwrap_err(), SerialError::Ambiguous);
        assert_eq!(
            parse_serial(&"9".repeat(200)).unwrap_err(),
            SerialError::TooLong
        );
        assert_eq!(
            parse_serial(&format!("0x{}", "f".repeat(200))).unwrap_err(),
            SerialError::TooLong
        );
    }

    #[test]
    fn decimal_round_trips() {
        for serial in [vec![1u8], vec![0x49, 0x96, 0x02, 0xd2], vec![0xff; 20]] {
            let text = serial_to_decimal(&serial);
            assert_eq!(parse_serial(&text).unwrap(), serial, "{text}");
        }
        assert_eq!(serial_to_decimal(&[0x49, 0x96, 0x02, 0xd2]), "1234567890");
        assert_eq!(serial_to_decimal(&[]), "0");
    }
}
