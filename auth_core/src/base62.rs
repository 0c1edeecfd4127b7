//! Fixed-width base62 for credential bodies and checksums.
//!
//! Base62 (`0-9A-Za-z`) keeps a credential one "word" for double-click selection and URLs, with
//! no characters that need escaping anywhere. Widths are fixed so that every credential of a kind
//! has the same length, which lets a parser reject a wrong-sized string before looking at it.

/// The 62 digits, in value order.
pub(crate) const ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Whether `byte` is one of the 62 digits.
pub(crate) fn is_digit(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

/// Writes the big-endian number in `bytes` as exactly `width` base62 digits into `out`.
///
/// `width` must be large enough for any value of `bytes.len()` bytes
/// (`62^width >= 256^bytes.len()`); callers use fixed pairs that satisfy this.
pub(crate) fn encode_fixed(bytes: &[u8], width: usize, out: &mut String) {
    // Schoolbook long division by 62: quadratic, but the inputs are at most 32 bytes.
    let mut number = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let accumulator = (remainder << 8) | u32::from(*byte);
            *byte = (accumulator / 62) as u8;
            remainder = accumulator % 62;
        }
        *slot = ALPHABET[remainder as usize];
    }
    debug_assert!(number.iter().all(|&b| b == 0), "width too small for input");
    out.extend(digits.iter().map(|&d| char::from(d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(bytes: &[u8], width: usize) -> String {
        let mut out = String::new();
        encode_fixed(bytes, width, &mut out);
        out
    }

    #[test]
    fn encodes_known_values() {
        assert_eq!(encode(&[0], 2), "00");
        assert_eq!(encode(&[61], 2), "0z");
        assert_eq!(encode(&[62], 2), "10");
        assert_eq!(encode(&[0xff, 0xff, 0xff, 0xff], 6), "4gfFC3");
    }

    #[test]
    fn widest_value_fits_its_width() {
        // 256 bits need 43 digits: 62^43 > 2^256 > 62^42.
        let encoded = encode(&[0xff; 32], 43);
        assert_eq!(encoded.len(), 43);
        assert_ne!(&encoded[..1], "0");
    }

    #[test]
    fn alphabet_matches_digit_predicate() {
        for byte in 0..=255u8 {
            assert_eq!(ALPHABET.contains(&byte), is_digit(byte), "byte {byte}");
        }
    }
}
