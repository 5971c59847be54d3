//! Reading what a LAPI sends, decision by decision, as it arrives: the
//! body is never held whole, no string in it may be longer than
//! [`MAX_TOKEN`], and one malformed decision is one decision skipped, not
//! a stream refused. What is kept is the caller's choice (bounded by
//! `max_decisions`), so memory follows that setting, not what the LAPI
//! sends.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::io::{self, Read};

/// The longest string (key or value) read from a LAPI: decisions hold
/// addresses, Go durations and scenario names.
pub const MAX_TOKEN: usize = 4096;

/// Fails a read once a JSON string runs past [`MAX_TOKEN`] bytes, so the
/// parser never buffers a hostile 500 MB "value".
pub struct TokenLimit<R> {
    inner: R,
    in_string: bool,
    escaped: bool,
    length: usize,
}

impl<R: Read> TokenLimit<R> {
    pub fn new(inner: R) -> TokenLimit<R> {
        TokenLimit { inner, in_string: false, escaped: false, length: 0 }
    }
}

impl<R: Read> Read for TokenLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if !self.in_string {
                if b == b'"' {
                    self.in_string = true;
                    self.length = 0;
                }
                continue;
            }
            self.length += 1;
            if self.length > MAX_TOKEN {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a string longer than {MAX_TOKEN} bytes: not a decision stream"),
                ));
            }
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
        }
        Ok(n)
    }
}

/// One field of a decision as sent: whatever JSON type it had.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field {
    #[default]
    Missing,
    Null,
    Text(String),
    Int(i64),
    /// Another type (a float, a bool, a list, an object): named.
    Other(&'static str),
}

impl Field {
    /// The text, if it was a string.
    pub fn text(&self) -> Option<&str> {
        match self {
            Field::Text(t) => Some(t),
            _ => None,
        }
    }

    /// What it was, for a message.
    pub fn kind(&self) -> &'static str {
        match self {
            Field::Missing => "missing",
            Field::Null => "null",
            Field::Text(_) => "a string",
            Field::Int(_) => "a number",
            Field::Other(k) => k,
        }
    }
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(Field::Text(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Field, E> {
        Ok(Field::Text(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field, E> {
        Ok(Field::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field, E> {
        Ok(i64::try_from(v).map_or(Field::Other("a number too large"), Field::Int))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Field, E> {
        Ok(Field::Other("a fraction"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Field, E> {
        Ok(Field::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Field, E> {
        Ok(Field::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Other("a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Other("an object"))
    }
}

/// A decision as the stream sends it, every field whatever it held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawDecision {
    /// False when the element was not a JSON object at all.
    pub object: bool,
    pub id: Field,
    pub duration: Field,
    pub origin: Field,
    pub scenario: Field,
    pub scope: Field,
    pub kind: Field,
    pub value: Field,
}

impl<'de> de::Deserialize<'de> for RawDecision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawDecision, D::Error> {
        d.deserialize_any(DecisionVisitor)
    }
}

struct DecisionVisitor;

impl<'de> Visitor<'de> for DecisionVisitor {
    type Value = RawDecision;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decision")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawDecision, A::Error> {
        let mut d = RawDecision { object: true, ..RawDecision::default() };
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "id" => &mut d.id,
                "duration" => &mut d.duration,
                "origin" => &mut d.origin,
                "scenario" => &mut d.scenario,
                "scope" => &mut d.scope,
                "type" => &mut d.kind,
                "value" => &mut d.value,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<Field>()?;
        }
        Ok(d)
    }
    // Anything else is consumed and reported as not an object.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawDecision, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawDecision::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawDecision, E> {
        Ok(RawDecision::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawDecision, E> {
        Ok(RawDecision::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawDecision, E> {
        Ok(RawDecision::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawDecision, E> {
        Ok(RawDecision::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawDecision, E> {
        Ok(RawDecision::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawDecision, E> {
        Ok(RawDecision::default())
    }
}

/// Which list of the stream a decision came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    New,
    Deleted,
}

/// Reads a decision stream (`{"new": [...], "deleted": [...]}`, each list
/// possibly null), handing each decision to `each` as it is read. Both
/// keys must be there: every LAPI version sends them, and a `{}` (from a
/// proxy, say) must not read as "nothing in force".
pub fn read_stream<R: Read>(reader: R, each: &mut dyn FnMut(List, RawDecision)) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_reader(io::BufReader::with_capacity(64 * 1024, reader));
    let seen = StreamSeed { each }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    match seen {
        (true, true) => Ok(()),
        (new, deleted) => Err(format!(
            "not a decision stream: {} missing",
            match (new, deleted) {
                (false, false) => "\"new\" and \"deleted\" are",
                (false, true) => "\"new\" is",
                _ => "\"deleted\" is",
            }
        )),
    }
}

struct StreamSeed<'a> {
    each: &'a mut dyn FnMut(List, RawDecision),
}

impl<'de> DeserializeSeed<'de> for StreamSeed<'_> {
    /// Whether "new" and "deleted" were there.
    type Value = (bool, bool);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(bool, bool), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StreamSeed<'_> {
    type Value = (bool, bool);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decision stream object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(bool, bool), A::Error> {
        let (mut new, mut deleted) = (false, false);
        while let Some(key) = map.next_key::<String>()? {
            let list = match key.as_str() {
                "new" => {
                    new = true;
                    List::New
                }
                "deleted" => {
                    deleted = true;
                    List::Deleted
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            map.next_value_seed(ListSeed { list, each: &mut *self.each })?;
        }
        Ok((new, deleted))
    }
}

struct ListSeed<'a> {
    list: List,
    each: &'a mut dyn FnMut(List, RawDecision),
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of decisions, or null")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(d) = seq.next_element::<RawDecision>()? {
            (self.each)(self.list, d);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<(List, RawDecision)>, String> {
        let mut got = Vec::new();
        read_stream(TokenLimit::new(text.as_bytes()), &mut |l, d| got.push((l, d)))?;
        Ok(got)
    }

    #[test]
    fn every_lapi_shape_reads() {
        assert!(read(r#"{"deleted":null,"new":null}"#).unwrap().is_empty());
        assert!(read(r#"{"new": [], "deleted": []}"#).unwrap().is_empty());
        let got = read(
            r#"{"deleted":null,"new":[{"duration":"59m55.8s","id":1,"origin":"cscli","scenario":"x","scope":"Ip","type":"ban","value":"198.51.100.7","uuid":"u"}]}"#,
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, List::New);
        assert_eq!(got[0].1.value, Field::Text("198.51.100.7".into()));
        assert_eq!(got[0].1.id, Field::Int(1));
    }

    #[test]
    fn a_bad_decision_is_one_decision_not_the_stream() {
        let got = read(
            r#"{"new":[{"id":"7","scenario":null,"scope":"Ip","type":"ban","value":"198.51.100.7","duration":"1h"},
                       {"id":1.5,"value":["x"],"scope":{"a":1}}, 42, "text", null,
                       {"id":3,"scope":"Ip","type":"ban","value":"198.51.100.8","duration":"1h","id":4}],
                "deleted":[{"value":"192.0.2.1"}]}"#,
        )
        .unwrap();
        assert_eq!(got.len(), 7);
        assert_eq!(got[0].1.id, Field::Text("7".into()));
        assert_eq!(got[0].1.scenario, Field::Null);
        assert_eq!(got[1].1.id, Field::Other("a fraction"));
        assert_eq!(got[1].1.value.kind(), "a list");
        assert!(!got[2].1.object && !got[3].1.object && !got[4].1.object);
        assert_eq!(got[5].1.id, Field::Int(4), "a repeated key: the last one counts");
        assert_eq!(got[6].0, List::Deleted);
    }

    #[test]
    fn a_stream_that_is_not_one_is_refused() {
        for bad in ["{}", r#"{"new":null}"#, "[]", "null", r#"{"new":7,"deleted":null}"#, r#"{"new":[{}"#] {
            assert!(read(bad).is_err(), "{bad}");
        }
        assert!(read(r#"{}"#).unwrap_err().contains("\"new\" and \"deleted\" are missing"));
    }

    #[test]
    fn a_huge_string_stops_the_read() {
        let text = format!(r#"{{"new":[{{"value":"{}"}}],"deleted":null}}"#, "a".repeat(MAX_TOKEN + 1));
        assert!(read(&text).unwrap_err().contains("longer than"));
        let ok = format!(r#"{{"new":[{{"value":"{}\"x"}}],"deleted":null}}"#, "a".repeat(MAX_TOKEN - 10));
        assert_eq!(read(&ok).unwrap().len(), 1);
    }
}
