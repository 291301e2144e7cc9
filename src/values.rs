//! The value syntaxes of the config file (durations, sizes, ratios, versions), as pure parsers and
//! as serde `deserialize_with` helpers that say what was wrong and how to write it. The sources'
//! and checks' own config sections use them.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de::Error};

/// The leading `major.minor[.patch]` of a release such as `6.1.0-18-amd64` or `20.10.24+dfsg1`.
pub fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let end = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let mut parts = s[..end].split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        None | Some("") => 0,
        Some(p) => p.parse().ok()?,
    };
    Some((major, minor, patch))
}

/// A size with a binary unit (B, KiB, MiB, GiB, TiB), e.g. "8GiB" or "512 MiB".
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// One port (`3260`) or an inclusive range (`"6800-7300"`).
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
    (a > 0 && a <= b).then_some((a, b))
}

pub fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    match humantime::parse_duration(&s) {
        Ok(v) if !v.is_zero() => Ok(v),
        Ok(_) => Err(D::Error::custom("duration must be greater than zero")),
        Err(e) => Err(D::Error::custom(format!("invalid duration {s:?} ({e}); write it like \"5ms\""))),
    }
}

pub fn ratio<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(D::Error::custom(format!("{v} is not a ratio from 0 to 1")))
    }
}

pub fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v)
        .ok()
        .filter(|v| *v <= 100)
        .ok_or_else(|| D::Error::custom(format!("{v} is not a percentage from 0 to 100")))
}

pub fn positive_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| D::Error::custom(format!("{v} must be a whole number greater than zero")))
}

pub fn non_empty_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if v.is_empty() || v.iter().any(|s| s.trim().is_empty()) {
        return Err(D::Error::custom("must list at least one name, and no empty ones"));
    }
    Ok(v)
}

pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    parse_size(&s).ok_or_else(|| D::Error::custom(format!("invalid size {s:?}; write it like \"8GiB\"")))
}

pub fn version<'de, D: Deserializer<'de>>(d: D) -> Result<(u32, u32, u32), D::Error> {
    let s = String::deserialize(d)?;
    parse_version(&s).ok_or_else(|| D::Error::custom(format!("invalid version {s:?}; write it like \"5.4\"")))
}

/// An upper version bound: "25.0" allows the whole 25.0.x series (patch `u32::MAX`).
pub fn version_upper<'de, D: Deserializer<'de>>(d: D) -> Result<(u32, u32, u32), D::Error> {
    let s = String::deserialize(d)?;
    let v = parse_version(&s)
        .ok_or_else(|| D::Error::custom(format!("invalid version {s:?}; write it like \"25.0\"")))?;
    let with_patch = s.trim().split(|c: char| !c.is_ascii_digit() && c != '.').next().unwrap_or("");
    Ok(if with_patch.split('.').filter(|p| !p.is_empty()).count() < 3 { (v.0, v.1, u32::MAX) } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn versions_sizes_ports() {
        assert_eq!(parse_version("6.18.44-fc-v669"), Some((6, 18, 44)));
        assert_eq!(parse_version("5.4"), Some((5, 4, 0)));
        assert_eq!(parse_version("4.19.0-26-amd64"), Some((4, 19, 0)));
        assert_eq!(parse_version("6"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_size("8GiB"), Some(8 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("99999999999 TiB"), None);
        assert_eq!(parse_port_range("1-1"), Some((1, 1)));
        assert_eq!(parse_port_range("x"), None);
    }

    proptest! {
        #[test]
        fn never_panic(s in "\\PC{0,30}") {
            let _ = (parse_version(&s), parse_size(&s), parse_port_range(&s));
        }
    }
}
