//! etcd's key-range convention: `[key, range_end)`, where an empty
//! range_end means the single key `key`, and a range_end of `"\0"` means
//! "every key from `key` on" (with key `"\0"` too: every key).

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRange {
    Single(Vec<u8>),
    /// `[start, end)`; `end == None` means unbounded.
    Span { start: Vec<u8>, end: Option<Vec<u8>> },
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::Span { start: key.to_vec(), end: None },
            end => KeyRange::Span { start: key.to_vec(), end: Some(end.to_vec()) },
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => key.as_slice() == k,
            KeyRange::Span { start, end } => {
                k >= start.as_slice() && end.as_deref().map_or(true, |e| k < e)
            }
        }
    }

    /// Lower bound, upper bound (exclusive, None = unbounded) for SQL.
    pub fn bounds(&self) -> (&[u8], Option<Vec<u8>>) {
        match self {
            KeyRange::Single(k) => {
                let mut end = k.clone();
                end.push(0);
                (k, Some(end))
            }
            KeyRange::Span { start, end } => (start, end.clone()),
        }
    }

    /// An empty span (end <= start) selects nothing, as in etcd.
    pub fn is_empty(&self) -> bool {
        matches!(self, KeyRange::Span { start, end: Some(end) } if end <= start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_prefix() {
        let single = KeyRange::new(b"a", b"");
        assert!(single.contains(b"a"));
        assert!(!single.contains(b"ab"));
        let prefix = KeyRange::new(b"a", b"b");
        assert!(prefix.contains(b"a") && prefix.contains(b"azz"));
        assert!(!prefix.contains(b"b"));
    }

    #[test]
    fn from_key_and_all() {
        let from = KeyRange::new(b"m", b"\0");
        assert!(from.contains(b"zzz") && !from.contains(b"a"));
        let all = KeyRange::new(b"\0", b"\0");
        assert!(all.contains(b"\0") && all.contains(b"\xff\xff"));
    }

    #[test]
    fn empty_span() {
        assert!(KeyRange::new(b"b", b"a").is_empty());
        assert!(!KeyRange::new(b"a", b"b").is_empty());
    }
}
