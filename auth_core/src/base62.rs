//! Fixed-width base62 for credential bodies and checksums.
//!
//! Base62 (`0-9A-Za-z`) keeps a credential one "word" for double-click selection and URLs, with
//! no characters that need escaping anywhere. Widths are fixed so that every credential of a kind
//! has the same length, which lets a parser reject a wrong-sized string before looking at it.

/// The 62 digits, in value order.
pub(crate) const ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What [`VALUES`] holds for a byte that is not a digit: the only entry with its high bit set.
const NOT_A_DIGIT: u8 = 0xFF;

/// Each byte's digit value, or [`NOT_A_DIGIT`]: one load per byte on the path that checks
/// every credential, in the client and in the server.
const VALUES: [u8; 256] = {
    let mut values = [NOT_A_DIGIT; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        values[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    values
};

/// Whether every byte of `bytes` is a digit. Looks at every byte (a credential has a fixed
/// length, checked before), which lets the loop run without a branch per byte.
pub(crate) fn all_digits(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(0u8, |seen, &byte| seen | VALUES[usize::from(byte)])
        & 0x80
        == 0
}

/// The value of a base62 digit, or None for any other byte.
pub(crate) fn digit_value(byte: u8) -> Option<u8> {
    let value = VALUES[usize::from(byte)];
    (value != NOT_A_DIGIT).then_some(value)
}

/// The number written by `digits` (at most 10 of them, so that it fits in 64 bits).
pub(crate) fn decode_u64(digits: &[u8]) -> Option<u64> {
    debug_assert!(digits.len() <= 10);
    digits
        .iter()
        .try_fold(0u64, |acc, &d| Some(acc * 62 + u64::from(digit_value(d)?)))
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
    fn alphabet_matches_digit_predicate_and_values() {
        for byte in 0..=255u8 {
            assert_eq!(ALPHABET.contains(&byte), all_digits(&[byte]), "byte {byte}");
            assert_eq!(
                ALPHABET.iter().position(|&d| d == byte).map(|p| p as u8),
                digit_value(byte),
                "byte {byte}"
            );
        }
    }

    #[test]
    fn all_digits_finds_any_byte_outside_the_alphabet_anywhere() {
        let digits: Vec<u8> = ALPHABET.iter().copied().cycle().take(49).collect();
        assert!(all_digits(&digits));
        assert!(all_digits(b""));
        for position in [0, 1, 24, 47, 48] {
            for byte in (0..=255u8).filter(|b| !ALPHABET.contains(b)) {
                let mut wrong = digits.clone();
                wrong[position] = byte;
                assert!(!all_digits(&wrong), "byte {byte} at {position}");
            }
        }
    }

    #[test]
    fn decoding_inverts_encoding() {
        for value in [0u32, 1, 61, 62, 12_345_678, u32::MAX] {
            let encoded = encode(&value.to_be_bytes(), 6);
            assert_eq!(decode_u64(encoded.as_bytes()), Some(u64::from(value)));
        }
        assert_eq!(decode_u64(b"-"), None);
    }
}
