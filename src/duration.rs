//! The one duration syntax of every flag and file: Go's, as k3s, etcd and
//! Kubernetes write durations (`10s`, `1h30m`, `500ms`), whole numbers only.
//! The command line and the inventory both read it here, so a value one
//! accepts the other accepts too.

use std::time::Duration;

/// `10s`, `1m30s`, `1h30m`, `500ms`, `2h`: units `ms`, `s`, `m`, `h`, whole
/// numbers, more than zero. Errors read well after a flag or a key name.
pub fn parse(s: &str) -> Result<Duration, String> {
    let shape = "must be a duration like 10s, 1m30s or 500ms";
    if s.is_empty() {
        return Err(format!("is empty; it {shape}"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} has no unit; write {s}s for seconds"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{s:?} {shape}"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| format!("{s:?} is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ if rest.starts_with('.') => return Err(format!("{s:?}: use whole numbers, e.g. 1500ms instead of 1.5s")),
            _ => return Err(format!("{s:?} {shape} (units: ms, s, m, h)")),
        };
        rest = &rest[unit_len..];
        total = total.saturating_add(unit);
    }
    if total.is_zero() {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1s500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("10m0s"), Ok(Duration::from_secs(600)), "as Go prints durations");
    }

    #[test]
    fn what_is_refused_says_why() {
        for bad in ["", "10", "s", "1.5s", "0s", "0h0m", "10 s", "1d", "-1s", "1h30", "99999999999999999999s"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(parse("10").unwrap_err(), "\"10\" has no unit; write 10s for seconds");
        assert!(parse("1.5s").unwrap_err().contains("1500ms"));
        assert!(parse("1d").unwrap_err().contains("units: ms, s, m, h"));
        assert!(parse("0s").unwrap_err().contains("more than zero"));
    }
}
