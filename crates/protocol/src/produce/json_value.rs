//! The JSON values inside a produce frame, read by serde visitors without a `Value` tree (M5):
//! [`Skip`] checks and drops a value, [`FieldSeed`] keeps a scalar (or the kind of an array or
//! object), and [`Compact`] writes a `json` key or value out compactly as it is read, exactly
//! as `serde_json::to_vec(&Value)` would. Used by [`super::frame`].

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// Consumes any JSON value with the checks of a `Value` parse (recursion limit, number
/// range, string escapes) and keeps nothing.
pub(super) struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// Consumes the rest of an array or object a visitor did not want, and names its kind.
pub(super) fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<&'static str, A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok("array")
}

pub(super) fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<&'static str, A::Error> {
    while map.next_entry::<Skip, Skip>()?.is_some() {}
    Ok("object")
}

/// A field's JSON value: scalars as a `Value`; arrays and objects by kind, and as compact JSON
/// text when asked (a `json` key or value), never as a tree.
pub(super) enum Field {
    Scalar(Value),
    Composite { kind: &'static str, json: Vec<u8> },
}

impl Field {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Field::Scalar(v) => crate::format::json_kind(v),
            Field::Composite { kind, .. } => kind,
        }
    }

    pub(super) fn is_null(&self) -> bool {
        matches!(self, Field::Scalar(Value::Null))
    }
}

/// Reads a [`Field`]; `keep` says whether arrays and objects keep their text.
pub(super) struct FieldSeed {
    pub(super) keep: bool,
}

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Field, E> {
        Ok(Field::Scalar(Value::Null))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Field, E> {
        Ok(Field::Scalar(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Field, E> {
        Ok(Field::Scalar(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Field, E> {
        Ok(Field::Scalar(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Field, E> {
        Ok(Field::Scalar(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Field, E> {
        Ok(Field::Scalar(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Field, E> {
        Ok(Field::Scalar(Value::String(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field, A::Error> {
        if !self.keep {
            return Ok(Field::Composite { kind: skip_seq(seq)?, json: Vec::new() });
        }
        let mut json = Vec::new();
        Compact(&mut json).visit_seq(seq)?;
        Ok(Field::Composite { kind: "array", json })
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field, A::Error> {
        if !self.keep {
            return Ok(Field::Composite { kind: skip_map(map)?, json: Vec::new() });
        }
        let mut json = Vec::new();
        Compact(&mut json).visit_map(map)?;
        Ok(Field::Composite { kind: "object", json })
    }
}

/// Writes a JSON value compactly into its buffer as it is read, exactly as
/// `serde_json::to_vec(&Value)` would: objects with sorted keys, the last duplicate winning.
pub(super) struct Compact<'a>(pub(super) &'a mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Compact<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Compact<'_> {
    fn write<T: serde::Serialize + ?Sized>(self, v: &T) {
        serde_json::to_writer(&mut *self.0, v).expect("writing JSON to a Vec never fails");
    }
}

impl<'de> Visitor<'de> for Compact<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.write(&v);
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.write(&v);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.write(&v);
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // As `Value` does: a number it cannot hold is null (the parser never yields one).
        match serde_json::Number::from_f64(v) {
            Some(n) => self.write(&n),
            None => self.0.extend_from_slice(b"null"),
        }
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.write(v);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.0;
        out.push(b'[');
        let mut first = true;
        loop {
            let mark = out.len();
            if !first {
                out.push(b',');
            }
            if seq.next_element_seed(Compact(&mut *out))?.is_none() {
                out.truncate(mark);
                break;
            }
            first = false;
        }
        out.push(b']');
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Sorted and deduplicated like serde_json's BTreeMap-backed `Map`.
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let mut value = Vec::new();
            map.next_value_seed(Compact(&mut value))?;
            entries.push((key, value));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let out = self.0;
        out.push(b'{');
        let mut written = 0;
        for i in 0..entries.len() {
            if entries.get(i + 1).is_some_and(|next| next.0 == entries[i].0) {
                continue; // a later duplicate wins (the sort is stable)
            }
            if written > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, &entries[i].0).expect("writing JSON to a Vec never fails");
            out.push(b':');
            out.extend_from_slice(&entries[i].1);
            written += 1;
        }
        out.push(b'}');
        Ok(())
    }
}
