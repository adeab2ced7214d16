//! Money and credits: one fixed-point unit, the micro-unit (10⁻⁶), held in an `i64`, for both
//! US dollars and credits. Never a float: amounts are parsed from decimal text and printed back
//! without loss. The one rounding rule lives in [`div_ceil`]: a charge rounds up to the next
//! micro-unit; nothing else rounds (grants, refunds and adjustments are exact by construction).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Micro-units in one unit.
pub const SCALE: i64 = 1_000_000;
/// Decimal places a [`Micros`] can carry.
const DECIMALS: usize = 6;

/// An exact amount in micro-units (of a dollar or of a credit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Micros(pub i64);

/// Written as its exact decimal text (`"2.5"`), which [`Micros::deserialize`] reads back to the
/// same value: settings stored as JSON round-trip without a unit mix-up.
impl Serialize for Micros {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Micros {
    pub const ZERO: Micros = Micros(0);

    /// Whole units: `Micros::units(5)` is 5.000000.
    pub const fn units(n: i64) -> Micros {
        Micros(n * SCALE)
    }

    /// Parses decimal text: `"12"`, `"0.015"`, `"-3.5"`. At most six decimals (more would have
    /// to round, and nothing but a charge rounds); no exponent, no thousands separators.
    pub fn parse(text: &str) -> Result<Micros, String> {
        let t = text.trim();
        let (negative, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && frac.is_empty() || !all_digits(whole) || !all_digits(frac) {
            return Err(format!("{text:?} is not a decimal number"));
        }
        if frac.len() > DECIMALS {
            return Err(format!(
                "{text:?} has more than {DECIMALS} decimal places (the unit is 0.000001)"
            ));
        }
        let too_large = || format!("{text:?} is too large");
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let frac: i64 = format!("{frac:0<DECIMALS$}").parse().unwrap_or(0);
        let value = whole
            .checked_mul(SCALE)
            .and_then(|w| w.checked_add(frac))
            .ok_or_else(too_large)?;
        Ok(Micros(if negative { -value } else { value }))
    }

    pub fn checked_add(self, other: Micros) -> Option<Micros> {
        self.0.checked_add(other.0).map(Micros)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

/// Shortest exact decimal: `2500000` → `"2.5"`, `-1` → `"-0.000001"`, `0` → `"0"`. This is the
/// display string sent beside every `_micros` field.
impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let (whole, frac) = (abs / SCALE as u64, abs % SCALE as u64);
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let frac = format!("{frac:0DECIMALS$}");
        write!(f, "{sign}{whole}.{}", frac.trim_end_matches('0'))
    }
}

/// Config files may write amounts as strings (`"0.015"`, exact by definition), integers, or
/// TOML floats; a float is read through its shortest decimal form, which is the text the user
/// wrote (`1.3` → `"1.3"`), then parsed exactly.
impl<'de> Deserialize<'de> for Micros {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(n) => n.to_string(),
            Raw::Float(x) if x.is_finite() => format!("{x}"),
            Raw::Float(_) => return Err(serde::de::Error::custom("expected a finite number")),
            Raw::Text(s) => s,
        };
        Micros::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `ceil(numerator / denominator)` for a positive denominator: the one place a charge rounds
/// (up, so tollgate never undercharges by a fraction of a micro-unit).
pub fn div_ceil(numerator: i128, denominator: i128) -> i128 {
    debug_assert!(denominator > 0);
    let q = numerator / denominator;
    if numerator % denominator > 0 {
        q + 1
    } else {
        q
    }
}

/// Digits after the decimal point of a currency's minor unit (ISO 4217): 0 for the yen and
/// its kind, 3 for the dinars, 2 for the rest.
pub fn currency_exponent(currency: &str) -> u32 {
    const ZERO: [&str; 16] = [
        "bif", "clp", "djf", "gnf", "isk", "jpy", "kmf", "krw", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    ];
    const THREE: [&str; 6] = ["bhd", "iqd", "jod", "kwd", "omr", "tnd"];
    let c = currency.to_ascii_lowercase();
    if ZERO.contains(&c.as_str()) {
        0
    } else if THREE.contains(&c.as_str()) {
        3
    } else {
        2
    }
}

/// A store's amount in major units, written as a decimal (`"19.99"`, or a JSON number's
/// shortest text), in the currency's minor units (`1999`), exactly; `None` when it is not a
/// non-negative decimal or has more decimal places than the currency has.
pub fn to_minor_units(decimal: &str, currency: &str) -> Option<i64> {
    let exponent = currency_exponent(currency);
    let (_, frac) = decimal.trim().split_once('.').unwrap_or((decimal, ""));
    if frac.len() > exponent as usize {
        return None;
    }
    let micros = Micros::parse(decimal).ok().filter(|m| m.0 >= 0)?;
    // micros = major × 10⁶; minor = major × 10^exponent.
    Some(micros.0 / 10_i64.pow(DECIMALS as u32 - exponent))
}

/// Minor units as the amount a person reads, by the currency's exponent: `1999 usd` →
/// `19.99 USD`, `1000 jpy` → `1000 JPY`, `1234 kwd` → `1.234 KWD`.
pub fn format_minor_units(minor: i64, currency: &str) -> String {
    let exponent = currency_exponent(currency);
    let code = currency.to_ascii_uppercase();
    if exponent == 0 {
        return format!("{minor} {code}");
    }
    let unit = 10_i64.pow(exponent);
    let sign = if minor < 0 { "-" } else { "" };
    let (major, frac) = (
        minor.unsigned_abs() / unit as u64,
        minor.unsigned_abs() % unit as u64,
    );
    format!(
        "{sign}{major}.{frac:0width$} {code}",
        width = exponent as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_parses_exactly() {
        assert_eq!(Micros::parse("12").unwrap(), Micros(12_000_000));
        assert_eq!(Micros::parse("0.015").unwrap(), Micros(15_000));
        assert_eq!(Micros::parse("1.3").unwrap(), Micros(1_300_000));
        assert_eq!(Micros::parse(".5").unwrap(), Micros(500_000));
        assert_eq!(Micros::parse("-3.000001").unwrap(), Micros(-3_000_001));
        assert_eq!(Micros::parse("0.000001").unwrap(), Micros(1));
    }

    #[test]
    fn text_that_would_have_to_round_or_is_not_a_number_is_refused() {
        for bad in [
            "0.0000001",
            "",
            ".",
            "1e3",
            "1,000",
            "abc",
            "--1",
            "99999999999999",
        ] {
            assert!(Micros::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn display_is_the_shortest_exact_decimal_and_round_trips() {
        for (m, s) in [
            (2_500_000, "2.5"),
            (0, "0"),
            (1, "0.000001"),
            (-1, "-0.000001"),
            (-12_340_000, "-12.34"),
            (i64::MAX, "9223372036854.775807"),
        ] {
            assert_eq!(Micros(m).to_string(), s);
            assert_eq!(Micros::parse(s).unwrap(), Micros(m));
        }
    }

    #[test]
    fn config_values_may_be_strings_integers_or_floats_and_stay_exact() {
        #[derive(Deserialize)]
        struct T {
            a: Micros,
            b: Micros,
            c: Micros,
        }
        let t: T = serde_json::from_str(r#"{"a": "0.1", "b": 3, "c": 1.3}"#).unwrap();
        assert_eq!(
            (t.a, t.b, t.c),
            (Micros(100_000), Micros(3_000_000), Micros(1_300_000))
        );
        assert!(serde_json::from_str::<T>(r#"{"a": 0.0000001, "b": 1, "c": 1}"#).is_err());
    }

    #[test]
    fn serialized_amounts_read_back_unchanged() {
        for m in [0, 1, 2_500_000, -7, i64::MAX] {
            let json = serde_json::to_string(&Micros(m)).unwrap();
            assert_eq!(
                serde_json::from_str::<Micros>(&json).unwrap(),
                Micros(m),
                "{json}"
            );
        }
    }

    #[test]
    fn only_a_remainder_rounds_up() {
        assert_eq!(div_ceil(10, 5), 2);
        assert_eq!(div_ceil(11, 5), 3);
        assert_eq!(div_ceil(0, 5), 0);
        assert_eq!(div_ceil(1, 1_000_000), 1);
    }

    #[test]
    fn store_amounts_become_minor_units_exactly_by_currency() {
        assert_eq!(to_minor_units("19.99", "usd"), Some(1999));
        assert_eq!(to_minor_units("6.9", "USD"), Some(690));
        assert_eq!(to_minor_units("1000", "jpy"), Some(1000));
        assert_eq!(to_minor_units("1.234", "kwd"), Some(1234));
        assert_eq!(
            to_minor_units("1.234", "usd"),
            None,
            "more places than cents"
        );
        assert_eq!(to_minor_units("10.5", "jpy"), None);
        assert_eq!(to_minor_units("-1", "usd"), None);
        assert_eq!(to_minor_units("abc", "usd"), None);
    }

    #[test]
    fn minor_units_read_by_their_currencys_exponent() {
        assert_eq!(format_minor_units(1999, "usd"), "19.99 USD");
        assert_eq!(format_minor_units(5, "eur"), "0.05 EUR");
        assert_eq!(format_minor_units(1000, "jpy"), "1000 JPY");
        assert_eq!(format_minor_units(1234, "kwd"), "1.234 KWD");
    }
}
