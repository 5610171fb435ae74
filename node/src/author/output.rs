//! A task's output for people: text as it is, MessagePack as JSON, other
//! bytes as they are.

use serde_json::{Map, Value as Json};

/// What a task printed, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// UTF-8 text with no control characters but tab, CR and LF (empty
    /// output too).
    Text(String),
    /// Exactly one MessagePack value and nothing after it, as JSON (bin
    /// becomes an array of numbers, integer map keys become strings).
    MessagePack(serde_json::Value),
    /// Anything else.
    Bytes(Vec<u8>),
}

impl Output {
    /// Classifies `bytes`: text first (a one-byte text such as `"5"` is also
    /// a valid MessagePack integer, and text is what it more likely is),
    /// then MessagePack.
    pub fn of(bytes: &[u8]) -> Output {
        if let Ok(text) = std::str::from_utf8(bytes)
            && text
                .chars()
                .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        {
            return Output::Text(text.to_string());
        }
        match msgpack_to_json(bytes) {
            Some(value) => Output::MessagePack(value),
            None => Output::Bytes(bytes.to_vec()),
        }
    }

    /// Its name in `chorus task test --json`: `text`, `msgpack` or `bytes`.
    pub fn format(&self) -> &'static str {
        match self {
            Output::Text(_) => "text",
            Output::MessagePack(_) => "msgpack",
            Output::Bytes(_) => "bytes",
        }
    }

    /// As a JSON value: the text, the decoded value, or the bytes in hex.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Output::Text(t) => serde_json::Value::String(t.clone()),
            Output::MessagePack(v) => v.clone(),
            Output::Bytes(b) => serde_json::Value::String(hex::encode(b)),
        }
    }
}

/// One MessagePack value filling all of `bytes`, as JSON ([`to_json`]).
pub fn msgpack_to_json(bytes: &[u8]) -> Option<serde_json::Value> {
    to_json_value(bytes).ok()
}

/// The one MessagePack value `bytes` holds, as JSON (see [`to_json`]);
/// bytes after it are an error.
pub fn to_json_value(bytes: &[u8]) -> Result<Json, String> {
    if bytes.is_empty() {
        return Err("the file is empty".to_string());
    }
    let mut rest = bytes;
    let value = rmpv::decode::read_value_ref(&mut rest).map_err(|e| format!("at byte 0: {e}"))?;
    if !rest.is_empty() {
        return Err(format!(
            "{} bytes follow the value that ends at byte {} (--all reads a stream of values)",
            rest.len(),
            bytes.len() - rest.len()
        ));
    }
    Ok(to_json(&value))
}

/// Every MessagePack value in `bytes`, in order, as JSON (see [`to_json`]).
/// An empty file, a value cut short or a byte that starts no value is an
/// error naming the offset.
pub fn to_json_values(bytes: &[u8]) -> Result<Vec<Json>, String> {
    if bytes.is_empty() {
        return Err("the file is empty".to_string());
    }
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let at = bytes.len() - rest.len();
        let value =
            rmpv::decode::read_value_ref(&mut rest).map_err(|e| format!("at byte {at}: {e}"))?;
        out.push(to_json(&value));
    }
    Ok(out)
}

/// One MessagePack value as JSON: maps with non-string keys get their keys
/// as JSON text, binary as `{"bin": "<hex>"}` (or `{"bin_utf8": "..."}`
/// when it is printable UTF-8 text), extension types as `{"ext": type, "hex": ...}`,
/// floats that JSON cannot hold (NaN, ±∞) as strings.
pub fn to_json(v: &rmpv::ValueRef<'_>) -> Json {
    use rmpv::ValueRef as V;
    match v {
        V::Nil => Json::Null,
        V::Boolean(b) => Json::Bool(*b),
        V::Integer(i) => i
            .as_u64()
            .map(Json::from)
            .or_else(|| i.as_i64().map(Json::from))
            .unwrap_or(Json::Null),
        V::F32(f) => float(f64::from(*f)),
        V::F64(f) => float(*f),
        V::String(s) => match s.as_str() {
            Some(s) => Json::String(s.to_string()),
            None => bin(s.as_bytes()),
        },
        V::Binary(b) => bin(b),
        V::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        V::Map(pairs) => {
            let mut map = Map::new();
            for (k, val) in pairs {
                let key = match k {
                    V::String(s) if s.as_str().is_some() => s.as_str().unwrap_or("").to_string(),
                    other => to_json(other).to_string(),
                };
                map.insert(key, to_json(val));
            }
            Json::Object(map)
        }
        V::Ext(ty, data) => {
            let mut map = Map::new();
            map.insert("ext".into(), Json::from(*ty));
            map.insert("hex".into(), Json::String(hex::encode(data)));
            Json::Object(map)
        }
    }
}

fn float(f: f64) -> Json {
    serde_json::Number::from_f64(f)
        .map(Json::Number)
        .unwrap_or_else(|| Json::String(f.to_string()))
}

fn bin(b: &[u8]) -> Json {
    let mut map = Map::new();
    match std::str::from_utf8(b) {
        Ok(text)
            if text
                .chars()
                .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t')) =>
        {
            map.insert("bin_utf8".into(), Json::String(text.to_string()))
        }
        _ => map.insert("bin".into(), Json::String(hex::encode(b))),
    };
    Json::Object(map)
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    #[test]
    fn text_messagepack_and_bytes() {
        #[derive(Serialize)]
        struct S {
            count: u64,
            mean: f64,
            name: &'static str,
            raw: serde_bytes::ByteBuf,
        }
        let packed = rmp_serde::to_vec_named(&S {
            count: 8,
            mean: 3.875,
            name: "x",
            raw: serde_bytes::ByteBuf::from(vec![1, 2]),
        })
        .unwrap();
        assert_eq!(
            Output::of(&packed),
            Output::MessagePack(serde_json::json!({
                "count": 8, "mean": 3.875, "name": "x", "raw": {"bin": "0102"}
            }))
        );
        // Trailing bytes: not one value.
        let mut longer = packed.clone();
        longer.push(0xc0);
        assert_eq!(Output::of(&longer).format(), "bytes");
        assert_eq!(
            Output::of(b"3 9 62\n"),
            Output::Text("3 9 62\n".to_string())
        );
        assert_eq!(Output::of(b""), Output::Text(String::new()));
        assert_eq!(Output::of(&[0xff, 0xfe, 0x00]).format(), "bytes");
        // Integer map keys become strings.
        let map = rmp_serde::to_vec(&std::collections::BTreeMap::from([(1u8, true)])).unwrap();
        assert_eq!(
            Output::of(&map),
            Output::MessagePack(serde_json::json!({"1": true}))
        );
    }
}
