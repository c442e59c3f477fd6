//! The Avro decoder for data from outside, with a depth and a size limit (finding H5 of the
//! review).
//!
//! apache-avro 0.21 decodes by recursion, one call per nested value, with no depth limit, and
//! in a debug build each call takes about 17 KiB of stack: with a recursive schema (a tree, a
//! linked list) a few KB of input overflow a 2 MiB tokio worker stack, and a stack overflow
//! aborts the whole process. It also reserves a block's claimed item count before reading any
//! item, and its allocation cap compares that count with a byte limit, so a 4-byte claim of
//! 16 million items reserves about 0.9 GB.
//!
//! [`decode`] reads the same binary encoding into the same [`AvroValue`]s with small frames,
//! and refuses a datum that nests deeper than [`MAX_AVRO_DEPTH`] values or whose arrays and
//! maps claim, all blocks together, more items than the datum has bytes (an item takes at
//! least one byte, except values of `null`, empty records and `fixed(0)`: an array of more of
//! those than the datum's length is refused too). Lengths of `bytes` and `string` must fit in
//! what is left. And the datum may hold at most [`VALUES_PER_BYTE`] values per byte (plus
//! [`VALUES_FREE`]): values of zero width (`null`, empty records, `fixed(0)`) cost no input, so
//! without this bound a schema whose records hold two fields of the next record type, 30
//! levels deep, builds 2^30 values from a 5-byte datum. So every allocation is backed by
//! input. Only `big-decimal` leaves are handed to apache-avro (a leaf: no recursion).

use std::collections::HashMap;

use apache_avro::schema::{Name, Namespace, ResolvedSchema, Schema};
use apache_avro::types::Value as AvroValue;

/// The deepest nesting of values a datum may have: a record is one level, each of its
/// fields one more, a union one and its branch one more, a named reference one. A linked list
/// of `record` nodes with an optional `next` takes three per node. The decoder needs well
/// under 1 KiB of stack per level in a debug build: a unit test decodes a datum at this depth
/// on a quarter of a tokio worker's 2 MiB stack.
pub const MAX_AVRO_DEPTH: usize = 128;

/// Values a datum may hold per byte of input, beyond [`VALUES_FREE`]: far above what real data
/// needs (a record of fifteen `null` fields in one byte of its parent's union index), far
/// below what makes a worker build gigabytes.
pub const VALUES_PER_BYTE: usize = 16;

/// Values any datum may hold, whatever its length.
pub const VALUES_FREE: usize = 4096;

/// Why a datum was refused: beyond a bound, or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatumError {
    #[error("the datum nests deeper than the proxy's limit of {MAX_AVRO_DEPTH} levels")]
    TooDeep,
    #[error("an array or map block claims {claimed} items, more than the datum's {limit} bytes allow")]
    TooManyItems { claimed: u64, limit: usize },
    #[error("the datum holds more than {limit} values, the proxy's limit for its length")]
    TooManyValues { limit: usize },
    #[error("{0}")]
    Malformed(String),
}

impl DatumError {
    /// The limit a refused datum exceeded (a metric label), or `None` when it is malformed.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            DatumError::TooDeep => Some("depth"),
            DatumError::TooManyItems { .. } => Some("items"),
            DatumError::TooManyValues { .. } => Some("values"),
            DatumError::Malformed(_) => None,
        }
    }
}

/// Decodes exactly one datum of `schema` from `bytes` (trailing bytes are an error).
pub fn decode(schema: &Schema, bytes: &[u8]) -> Result<AvroValue, DatumError> {
    let values = bytes.len().saturating_mul(VALUES_PER_BYTE).saturating_add(VALUES_FREE);
    let mut reader = Reader {
        root: schema,
        names: None,
        input: bytes,
        items_left: bytes.len(),
        limit: bytes.len(),
        values_left: values,
        values_limit: values,
    };
    let value = reader.value(schema, &None, 1)?;
    match reader.input.len() {
        0 => Ok(value),
        n => Err(malformed(format!("{n} bytes follow the end of the datum"))),
    }
}

struct Reader<'a, 's> {
    root: &'s Schema,
    /// The named types of `root`, resolved at the first reference (most schemas have none).
    names: Option<ResolvedSchema<'s>>,
    input: &'a [u8],
    /// Array and map items the datum may still claim.
    items_left: usize,
    limit: usize,
    /// Values the datum may still hold, and how many it could at first.
    values_left: usize,
    values_limit: usize,
}

fn malformed(why: impl Into<String>) -> DatumError {
    DatumError::Malformed(why.into())
}

fn truncated() -> DatumError {
    malformed("the datum is truncated")
}

impl<'a, 's> Reader<'a, 's> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DatumError> {
        if n > self.input.len() {
            return Err(truncated());
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DatumError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    /// Avro's zig-zag variable-length long (at most 10 bytes).
    fn long(&mut self) -> Result<i64, DatumError> {
        let mut z: u64 = 0;
        for (i, b) in self.input.iter().enumerate().take(10) {
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.input = &self.input[i + 1..];
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        if self.input.len() < 10 {
            Err(truncated())
        } else {
            Err(malformed("a variable-length integer is longer than 10 bytes"))
        }
    }

    fn int(&mut self) -> Result<i32, DatumError> {
        let n = self.long()?;
        i32::try_from(n).map_err(|_| malformed(format!("{n} is out of range for an int")))
    }

    /// The bytes of a `bytes` or `string`, whose length must fit in what is left.
    fn bytes(&mut self) -> Result<Vec<u8>, DatumError> {
        let n = self.long()?;
        let left = self.input.len();
        match usize::try_from(n) {
            Ok(n) if n <= left => Ok(self.take(n)?.to_vec()),
            Ok(_) => Err(malformed(format!("a length of {n} bytes is more than the {left} bytes left"))),
            Err(_) => Err(malformed(format!("a length of {n} is negative"))),
        }
    }

    fn string(&mut self) -> Result<String, DatumError> {
        String::from_utf8(self.bytes()?).map_err(|_| malformed("a string is not valid UTF-8"))
    }

    /// The item count of the next array or map block (0 ends the array or map).
    fn block(&mut self) -> Result<usize, DatumError> {
        let raw = self.long()?;
        if raw < 0 {
            // A negative count is followed by the block's size in bytes.
            self.long()?;
        }
        let claimed = raw.unsigned_abs();
        match usize::try_from(claimed) {
            Ok(n) if n <= self.items_left => {
                self.items_left -= n;
                Ok(n)
            }
            _ => Err(DatumError::TooManyItems { claimed, limit: self.limit }),
        }
    }

    /// The type a reference names.
    fn named(&mut self, name: &Name) -> Result<&'s Schema, DatumError> {
        if self.names.is_none() {
            self.names = Some(ResolvedSchema::try_from(self.root).map_err(|e| malformed(e.to_string()))?);
        }
        let names = self.names.as_ref().expect("resolved above").get_names();
        names.get(name).copied().ok_or_else(|| malformed(format!("the schema names no type {}", name.fullname(None))))
    }

    /// One value of `schema` (in the namespace of its enclosing named type), `depth` levels deep.
    fn value(&mut self, schema: &'s Schema, namespace: &Namespace, depth: usize) -> Result<AvroValue, DatumError> {
        if depth > MAX_AVRO_DEPTH {
            return Err(DatumError::TooDeep);
        }
        self.values_left =
            self.values_left.checked_sub(1).ok_or(DatumError::TooManyValues { limit: self.values_limit })?;
        let inner = depth + 1;
        Ok(match schema {
            Schema::Decimal(d) => match self.value(&d.inner, namespace, inner)? {
                AvroValue::Fixed(_, bytes) | AvroValue::Bytes(bytes) => AvroValue::Decimal(bytes.into()),
                other => return Err(malformed(format!("a decimal is stored as fixed or bytes, not {other:?}"))),
            },
            Schema::Enum(e) => {
                let index = self.int()?;
                let symbol = usize::try_from(index).ok().and_then(|i| e.symbols.get(i)).ok_or_else(|| {
                    malformed(format!("enum symbol {index} does not exist (the enum has {})", e.symbols.len()))
                })?;
                AvroValue::Enum(index as u32, symbol.clone())
            }
            Schema::Array(a) => {
                let mut items = Vec::new();
                loop {
                    let n = self.block()?;
                    if n == 0 {
                        break AvroValue::Array(items);
                    }
                    // Backed by input, but a byte's worth of claim need not reserve a `Value`'s.
                    items.reserve(n.min(1024));
                    for _ in 0..n {
                        items.push(self.value(&a.items, namespace, inner)?);
                    }
                }
            }
            Schema::Map(m) => {
                let mut items = HashMap::new();
                loop {
                    let n = self.block()?;
                    if n == 0 {
                        break AvroValue::Map(items);
                    }
                    items.reserve(n.min(1024));
                    for _ in 0..n {
                        let key = self.string()?;
                        items.insert(key, self.value(&m.types, namespace, inner)?);
                    }
                }
            }
            Schema::Union(u) => {
                let index = self.long()?;
                let branch = usize::try_from(index).ok().and_then(|i| u.variants().get(i)).ok_or_else(|| {
                    malformed(format!("union branch {index} does not exist (the union has {})", u.variants().len()))
                })?;
                AvroValue::Union(index as u32, Box::new(self.value(branch, namespace, inner)?))
            }
            Schema::Record(r) => {
                let name = r.name.fully_qualified_name(namespace);
                let mut fields = Vec::with_capacity(r.fields.len());
                for field in &r.fields {
                    fields.push((field.name.clone(), self.value(&field.schema, &name.namespace, inner)?));
                }
                AvroValue::Record(fields)
            }
            Schema::Ref { name } => {
                let name = name.fully_qualified_name(namespace);
                let resolved = self.named(&name)?;
                return self.value(resolved, &name.namespace, inner);
            }
            leaf => self.leaf(leaf)?,
        })
    }

    /// A value that holds no other value. Apart from [`Self::value`], so that the recursion's
    /// frames stay small (in a debug build every local of every arm takes its own slot).
    #[inline(never)]
    fn leaf(&mut self, schema: &Schema) -> Result<AvroValue, DatumError> {
        Ok(match schema {
            Schema::Null => AvroValue::Null,
            Schema::Boolean => match self.array::<1>()? {
                [0] => AvroValue::Boolean(false),
                [1] => AvroValue::Boolean(true),
                [b] => return Err(malformed(format!("{b} is not a boolean"))),
            },
            Schema::Int => AvroValue::Int(self.int()?),
            Schema::Date => AvroValue::Date(self.int()?),
            Schema::TimeMillis => AvroValue::TimeMillis(self.int()?),
            Schema::Long => AvroValue::Long(self.long()?),
            Schema::TimeMicros => AvroValue::TimeMicros(self.long()?),
            Schema::TimestampMillis => AvroValue::TimestampMillis(self.long()?),
            Schema::TimestampMicros => AvroValue::TimestampMicros(self.long()?),
            Schema::TimestampNanos => AvroValue::TimestampNanos(self.long()?),
            Schema::LocalTimestampMillis => AvroValue::LocalTimestampMillis(self.long()?),
            Schema::LocalTimestampMicros => AvroValue::LocalTimestampMicros(self.long()?),
            Schema::LocalTimestampNanos => AvroValue::LocalTimestampNanos(self.long()?),
            Schema::Float => AvroValue::Float(f32::from_le_bytes(self.array()?)),
            Schema::Double => AvroValue::Double(f64::from_le_bytes(self.array()?)),
            Schema::Duration => AvroValue::Duration(self.array::<12>()?.into()),
            Schema::Bytes => AvroValue::Bytes(self.bytes()?),
            Schema::String => AvroValue::String(self.string()?),
            Schema::Uuid => {
                let bytes = self.bytes()?;
                let uuid = if bytes.len() == 16 {
                    apache_avro::Uuid::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?
                } else {
                    let text = std::str::from_utf8(&bytes).map_err(|_| malformed("a uuid is not valid UTF-8"))?;
                    apache_avro::Uuid::parse_str(text).map_err(|e| malformed(e.to_string()))?
                };
                AvroValue::Uuid(uuid)
            }
            Schema::BigDecimal => {
                // A leaf: apache-avro reads it without recursing.
                let mut rest = self.input;
                let v = apache_avro::from_avro_datum(schema, &mut rest, None).map_err(|e| malformed(e.to_string()))?;
                self.input = rest;
                v
            }
            Schema::Fixed(f) => AvroValue::Fixed(f.size, self.take(f.size)?.to_vec()),
            other => return Err(malformed(format!("{other:?} is not a leaf type"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A linked list: `next` is null or another node.
    const LIST: &str = r#"{"type":"record","name":"Node","namespace":"t",
        "fields":[{"name":"next","type":["null","Node"]}]}"#;

    fn check(schema: &Schema, bytes: &[u8]) -> Result<(), DatumError> {
        decode(schema, bytes).map(drop)
    }

    fn list(nodes: usize) -> Vec<u8> {
        let mut bytes = vec![0x02; nodes - 1];
        bytes.push(0x00);
        bytes
    }

    /// Three decoder calls per node: its record, the union of `next`, and the reference to
    /// the next node's record (or, for the last node, the union's `null`).
    fn nodes_at_the_limit() -> usize {
        MAX_AVRO_DEPTH / 3
    }

    /// H5: a recursive schema with deep nesting is refused before apache-avro recurses.
    #[test]
    fn h5_deep_nesting_of_a_recursive_schema_is_refused() {
        let schema = Schema::parse_str(LIST).unwrap();
        assert_eq!(check(&schema, &list(nodes_at_the_limit())), Ok(()));
        assert_eq!(check(&schema, &list(nodes_at_the_limit() + 1)), Err(DatumError::TooDeep));
        assert_eq!(check(&schema, &list(100_000)), Err(DatumError::TooDeep));
    }

    /// The depth limit is safe: apache-avro decodes a datum at the limit on a quarter of a
    /// tokio worker's stack, even in a debug build.
    #[test]
    fn a_datum_at_the_depth_limit_decodes_on_a_quarter_of_a_worker_stack() {
        let decoded = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(|| {
                let schema = Schema::parse_str(LIST).unwrap();
                decode(&schema, &list(nodes_at_the_limit())).is_ok()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(decoded);
    }

    /// H5 (found in review): records of zero width cost no input, so a schema whose records
    /// hold two fields of the next record type doubles the values per level: 30 levels from
    /// a 0-byte datum would be 2^30 records. The value budget refuses it at once.
    #[test]
    fn h5_zero_width_records_that_double_per_level_are_refused() {
        let mut types = String::from(r#"{"type":"record","name":"R30","fields":[]}"#);
        for level in (0..30).rev() {
            types = format!(
                r#"{{"type":"record","name":"R{level}","fields":[{{"name":"a","type":{types}}},{{"name":"b","type":"R{}"}}]}}"#,
                level + 1
            );
        }
        let schema = Schema::parse_str(&types).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(check(&schema, &[]), Err(DatumError::TooManyValues { limit: VALUES_FREE }));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "refused, but only after {:?}",
            started.elapsed()
        );
        // Ten levels (2,047 values) are within the budget.
        let mut small = String::from(r#"{"type":"record","name":"S10","fields":[]}"#);
        for level in (0..10).rev() {
            small = format!(
                r#"{{"type":"record","name":"S{level}","fields":[{{"name":"a","type":{small}}},{{"name":"b","type":"S{}"}}]}}"#,
                level + 1
            );
        }
        assert_eq!(check(&Schema::parse_str(&small).unwrap(), &[]), Ok(()));
    }

    /// H5: block counts are capped by the bytes of the datum, all blocks together.
    #[test]
    fn h5_block_counts_are_capped_by_the_datum_length() {
        let ints = Schema::parse_str(r#"{"type":"array","items":"int"}"#).unwrap();
        // 16,000,000 items claimed in 4 bytes.
        assert_eq!(
            check(&ints, &[0x80, 0x90, 0xa1, 0x0f]),
            Err(DatumError::TooManyItems { claimed: 16_000_000, limit: 4 })
        );
        // A negative count (with its byte size) counts the same.
        assert_eq!(check(&ints, &[0xff, 0xa1, 0x0f, 0x02]).unwrap_err().limit(), Some("items"));
        // Three real items in one block, and in three blocks.
        assert_eq!(check(&ints, &[0x06, 0x02, 0x04, 0x06, 0x00]), Ok(()));
        assert_eq!(check(&ints, &[0x02, 0x02, 0x02, 0x04, 0x02, 0x06, 0x00]), Ok(()));
        // Items of no bytes (null) cannot be claimed beyond the datum's length in all.
        let nulls = Schema::parse_str(r#"{"type":"array","items":"null"}"#).unwrap();
        assert_eq!(check(&nulls, &[0x04, 0x00]), Ok(()));
        // 100 blocks of 63 nulls in 101 bytes.
        let mut many_blocks = vec![0x7e; 100];
        many_blocks.push(0);
        assert_eq!(check(&nulls, &many_blocks).unwrap_err().limit(), Some("items"));
        // Maps too.
        let map = Schema::parse_str(r#"{"type":"map","values":"null"}"#).unwrap();
        assert_eq!(check(&map, &[0x80, 0x90, 0xa1, 0x0f]).unwrap_err().limit(), Some("items"));
        assert_eq!(check(&map, &[0x02, 0x02, b'k', 0x00]), Ok(()));
    }

    /// The decoder reads what apache-avro writes into the same values apache-avro's own
    /// decoder returns, for every kind of schema (named references and logical types too).
    #[test]
    fn decodes_what_apache_avro_writes_as_apache_avro_does() {
        use AvroValue::*;
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"All","namespace":"t","fields":[
            {"name":"n","type":"null"}, {"name":"b","type":"boolean"}, {"name":"i","type":"int"},
            {"name":"l","type":"long"}, {"name":"f","type":"float"}, {"name":"d","type":"double"},
            {"name":"by","type":"bytes"}, {"name":"s","type":"string"},
            {"name":"fx","type":{"type":"fixed","name":"F4","size":4}},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},
            {"name":"a","type":{"type":"array","items":"long"}},
            {"name":"m","type":{"type":"map","values":["null","string"]}},
            {"name":"date","type":{"type":"int","logicalType":"date"}},
            {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"u","type":{"type":"string","logicalType":"uuid"}},
            {"name":"next","type":["null","All"]}, {"name":"fx2","type":"F4"}]}"#,
        )
        .unwrap();
        let node = |next: AvroValue| {
            Record(vec![
                ("n".into(), Null),
                ("b".into(), Boolean(true)),
                ("i".into(), Int(-5)),
                ("l".into(), Long(1_234_567_890_123)),
                ("f".into(), Float(1.5)),
                ("d".into(), Double(-2.25)),
                ("by".into(), Bytes(vec![0, 1, 255])),
                ("s".into(), String("héllo".into())),
                ("fx".into(), Fixed(4, vec![1, 2, 3, 4])),
                ("e".into(), Enum(2, "C".into())),
                ("a".into(), Array(vec![Long(1), Long(-1), Long(i64::MIN)])),
                (
                    "m".into(),
                    Map(HashMap::from([
                        ("k".into(), Union(1, Box::new(String("v".into())))),
                        ("z".into(), Union(0, Box::new(Null))),
                    ])),
                ),
                ("date".into(), Date(19_000)),
                ("ts".into(), TimestampMillis(1_700_000_000_000)),
                ("u".into(), Uuid(apache_avro::Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap())),
                ("next".into(), next),
                ("fx2".into(), Fixed(4, vec![9, 9, 9, 9])),
            ])
        };
        let value = node(Union(1, Box::new(node(Union(0, Box::new(Null))))));
        let bytes = apache_avro::to_avro_datum(&schema, value.clone()).unwrap();
        let theirs = apache_avro::from_avro_datum(&schema, &mut &bytes[..], None).unwrap();
        assert_eq!(decode(&schema, &bytes).unwrap(), theirs);
        assert_eq!(theirs, value);
        // Every cut is refused (apache-avro read some cuts as null).
        for cut in 0..bytes.len() {
            assert!(decode(&schema, &bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_data_is_refused_without_reading_past_the_end() {
        let s = Schema::parse_str(r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"},{"name":"u","type":["null","long"]}]}"#).unwrap();
        assert_eq!(check(&s, &[0x02, b'a', 0x02, 0x04]), Ok(()));
        assert!(matches!(check(&s, &[0x02, b'a', 0x02]), Err(DatumError::Malformed(_))));
        assert!(matches!(check(&s, &[0x7e, b'a']), Err(DatumError::Malformed(_))));
        assert!(matches!(check(&s, &[0x01]), Err(DatumError::Malformed(_))));
        assert!(matches!(check(&s, &[0x00, 0x08]), Err(DatumError::Malformed(_))));
        assert!(matches!(
            check(&s, &[0x00, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(DatumError::Malformed(_))
        ));
    }
}
