//! A task's output for people: text as it is, MessagePack as JSON, other
//! bytes as they are.

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

/// One MessagePack value filling all of `bytes`, transcoded to JSON.
pub fn msgpack_to_json(bytes: &[u8]) -> Option<serde_json::Value> {
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    let value = serde_transcode::transcode(&mut de, serde_json::value::Serializer).ok()?;
    (de.get_ref().position() == bytes.len() as u64).then_some(value)
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
                "count": 8, "mean": 3.875, "name": "x", "raw": [1, 2]
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
