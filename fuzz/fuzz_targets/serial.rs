//! Certificate serials as operators paste them: decimal, `0x` hex,
//! colon-hex.
//!
//! Input: UTF-8 text, given to `serial::parse_serial`.
//!
//! Properties checked, besides "no panic": an accepted serial is canonical
//! (non-empty, no leading zero byte, at most `MAX_SERIAL_LEN` bytes) and
//! reads back unchanged from its decimal, `0x` hex and (two bytes or more)
//! colon-hex forms; the
//! revocation list accepts exactly the serials `parse_serial` accepts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zt_core::revocation::RevocationSet;
use zt_core::serial::{MAX_SERIAL_LEN, parse_serial, serial_to_decimal};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_serial(text);
    if let Ok(bytes) = &parsed {
        assert!(!bytes.is_empty() && bytes[0] != 0, "canonical: {bytes:?}");
        assert!(bytes.len() <= MAX_SERIAL_LEN);
        let decimal = serial_to_decimal(bytes);
        assert_eq!(parse_serial(&decimal).as_ref(), Ok(bytes), "{decimal}");
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_serial(&format!("0x{hex}")).as_ref(), Ok(bytes));
        // One byte has no colon, and plain digits are decimal: colon-hex
        // needs two bytes or more (openssl prints small serials in decimal).
        if bytes.len() > 1 {
            let colon: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
            assert_eq!(parse_serial(&colon.join(":")).as_ref(), Ok(bytes));
        }
    }
    // A TOML basic string holds the text when it has no quote, backslash
    // or control character.
    if !text.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        let list = RevocationSet::from_toml_str(&format!("serials = [\"{text}\"]\n"), "fuzz");
        assert_eq!(list.is_ok(), parsed.is_ok(), "{text:?}: {list:?}");
        if let (Ok(list), Ok(bytes)) = (list, parsed) {
            assert_eq!(list.serials().collect::<Vec<_>>(), vec![bytes.as_slice()]);
        }
    }
});
