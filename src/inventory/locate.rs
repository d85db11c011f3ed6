//! Positions of fields in the source text.
//!
//! `serde_yaml::Value` keeps no positions, but serde_yaml attaches the
//! position of the node being read to any error a visitor returns. So to
//! find where `hosts[2].role` is, we walk the document again with a visitor
//! that follows the path and fails on purpose when it reaches the node: the
//! error's location is the node's line and column, as exact as the parser's
//! own (block or flow style, comments, anchors, multi-line strings alike).
//! A path that is not in the file (a missing key) stops at the deepest node
//! that exists, e.g. the mapping the key is missing from.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as _;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path like `hosts[2].ssh.port`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn key(&self, k: &str) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k)
                    if k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') && !k.is_empty() =>
                {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Key(k) => write!(f, "[{k:?}]")?,
            }
        }
        Ok(())
    }
}

/// The 1-based line and column of the value at `path` (or of its key when
/// `at_key`), in a text that parses as one YAML document.
pub fn locate(text: &str, path: &[Seg], at_key: bool) -> (usize, usize) {
    let de = serde_yaml::Deserializer::from_str(text);
    match (Seek { path, at_key }).deserialize(de) {
        Err(e) => e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1)),
        Ok(()) => (1, 1),
    }
}

const HERE: &str = "here";

struct Seek<'p> {
    path: &'p [Seg],
    at_key: bool,
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(want), rest)) = self.path.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        let fail_at_key = self.at_key && rest.is_empty();
        while let Some(found) = map.next_key_seed(KeySeed { want, fail: fail_at_key })? {
            if found {
                return map.next_value_seed(Seek { path: rest, at_key: self.at_key });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(de::Error::custom(HERE))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(want), rest)) = self.path.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(HERE));
            }
        }
        match seq.next_element_seed(Seek { path: rest, at_key: self.at_key })? {
            Some(()) | None => Err(de::Error::custom(HERE)),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
}

/// Reads a mapping key: `Ok(true)` when it is `want`; with `fail`, the
/// match is an error located at the key.
struct KeySeed<'a> {
    want: &'a str,
    fail: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match v == self.want {
            true if self.fail => Err(E::custom(HERE)),
            matched => Ok(matched),
        }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<bool, A::Error> {
        use de::VariantAccess;
        let ((), variant) = data.variant_seed(IgnoredAnySeed)?;
        variant.newtype_variant::<IgnoredAny>()?;
        Ok(false)
    }
}

struct IgnoredAnySeed;

impl<'de> DeserializeSeed<'de> for IgnoredAnySeed {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        IgnoredAny::deserialize(d).map(|_| ())
    }
}
