//! Weights as Finagle prints them: Java's `String.format("%.2f", w)`.
//!
//! Java formats from the shortest decimal digits that identify the double and then
//! rounds HALF_UP (so `1.005` prints `1.01`, `0.125` prints `0.13`), which is not what
//! Rust's `{:.2}` does (it rounds the exact binary value half-to-even). Every place that
//! re-serialises a dtab therefore rounds weights to two decimals, exactly like Linkerd.

/// Formats `w` with two decimals the way Java's `%.2f` does.
pub(crate) fn format_weight(w: f64) -> String {
    if w.is_nan() {
        return "NaN".to_string();
    }
    if w.is_infinite() {
        return if w > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    // Shortest round-trip digits, e.g. "1.005e0" or "3e-1".
    let sci = format!("{:e}", w.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|d| d - b'0')
        .collect();
    // value = 0.d1d2d3... * 10^(exp + 1): `point` digits stand before the decimal point.
    let point = exp + 1;
    let digit_at = |i: i64| -> u8 {
        if i < 0 || i >= digits.len() as i64 {
            0
        } else {
            digits[i as usize]
        }
    };
    // Keep every integer digit and two decimals, then look at the third decimal.
    let kept_len = (point + 2).max(0);
    let mut kept: Vec<u8> = (0..kept_len).map(digit_at).collect();
    if digit_at(point + 2) >= 5 {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, 1);
                break;
            }
            i -= 1;
            if kept[i] == 9 {
                kept[i] = 0;
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    // Pad so that there is at least one integer digit and exactly two decimals.
    while kept.len() < 3 {
        kept.insert(0, 0);
    }
    let split = kept.len() - 2;
    let int_part: String = kept[..split].iter().map(|d| char::from(b'0' + d)).collect();
    let int_part = int_part.trim_start_matches('0');
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    let frac: String = kept[split..].iter().map(|d| char::from(b'0' + d)).collect();
    let sign = if w.is_sign_negative() { "-" } else { "" };
    format!("{sign}{int_part}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::format_weight;

    /// Expected values printed by a JVM's `String.format("%.2f", w)`.
    #[test]
    fn matches_javas_percent_point_2f() {
        for (w, java) in [
            (0.3, "0.30"),
            (0.125, "0.13"),
            (0.875, "0.88"),
            (0.005, "0.01"),
            (2.0, "2.00"),
            (0.0, "0.00"),
            (1e20, "100000000000000000000.00"),
            (1.005, "1.01"),
            (2.675, "2.68"),
            (0.015, "0.02"),
            (0.045, "0.05"),
            (1.115, "1.12"),
            (123456789.125, "123456789.13"),
            (0.1 + 0.2, "0.30"),
            (5e-324, "0.00"),
            (0.999, "1.00"),
            (9.995, "10.00"),
            (0.0049, "0.00"),
            (0.7, "0.70"),
            (1.0, "1.00"),
        ] {
            assert_eq!(format_weight(w), java, "weight {w}");
        }
    }
}
