//! `chorus decode`: prints a MessagePack file (a task's input or output) as
//! JSON, so that outputs of typed tasks can be read without writing code.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Map, Value as Json};

/// Arguments of `chorus decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The MessagePack file; `-` reads stdin.
    pub file: PathBuf,
    /// One line per value instead of indented JSON.
    #[arg(long)]
    pub compact: bool,
    /// The file is a stream of values, back to back (default: exactly one
    /// value, as a task's output is; every ASCII byte is also a MessagePack
    /// integer, so a text file would otherwise read as a stream).
    #[arg(long)]
    pub all: bool,
}

/// Most bytes `decode` reads: outputs are capped at 16 MiB by default.
const MAX_FILE: u64 = 256 << 20;

/// Runs `chorus decode`: every MessagePack value of the file, in order, as
/// JSON on stdout. Exit 1 with the byte offset when the file is not
/// MessagePack (or is cut short).
pub fn run(args: DecodeArgs) -> anyhow::Result<ExitCode> {
    let bytes = read(&args.file)?;
    let values = if args.all {
        to_json_values(&bytes)
    } else {
        to_json_value(&bytes).map(|v| vec![v])
    }
    .with_context(|| format!("{} is not MessagePack", args.file.display()))?;
    for v in values {
        let text = if args.compact {
            serde_json::to_string(&v)?
        } else {
            serde_json::to_string_pretty(&v)?
        };
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .context("reading stdin")?;
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("opening {}", path.display()))?
            .take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    if bytes.len() as u64 > MAX_FILE {
        bail!("{} is larger than {} MiB", path.display(), MAX_FILE >> 20);
    }
    Ok(bytes)
}

/// The one MessagePack value `bytes` holds, as JSON (see [`to_json`]);
/// bytes after it are an error.
pub fn to_json_value(bytes: &[u8]) -> anyhow::Result<Json> {
    if bytes.is_empty() {
        bail!("the file is empty");
    }
    let mut rest = bytes;
    let value = rmpv::decode::read_value_ref(&mut rest).context("at byte 0")?;
    if !rest.is_empty() {
        bail!(
            "{} bytes follow the value that ends at byte {} (--all reads a stream of values)",
            rest.len(),
            bytes.len() - rest.len()
        );
    }
    Ok(to_json(&value))
}

/// Every MessagePack value in `bytes`, in order, as JSON (see [`to_json`]).
/// An empty file, a value cut short or a byte that starts no value is an
/// error naming the offset.
pub fn to_json_values(bytes: &[u8]) -> anyhow::Result<Vec<Json>> {
    if bytes.is_empty() {
        bail!("the file is empty");
    }
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let at = bytes.len() - rest.len();
        let value =
            rmpv::decode::read_value_ref(&mut rest).with_context(|| format!("at byte {at}"))?;
        out.push(to_json(&value));
    }
    Ok(out)
}

/// One MessagePack value as JSON: maps with non-string keys get their keys
/// as JSON text, binary as `{"bin": "<hex>"}` (or `{"bin_utf8": "..."}`
/// when it is UTF-8 text), extension types as `{"ext": type, "hex": ...}`,
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
        Ok(text) => map.insert("bin_utf8".into(), Json::String(text.to_string())),
        Err(_) => map.insert("bin".into(), Json::String(hex::encode(b))),
    };
    Json::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_maps_bytes_and_odd_values_become_json() {
        #[derive(serde::Serialize)]
        struct Count {
            lo: u64,
            hi: u64,
            count: u64,
        }
        let array = rmp_serde::to_vec(&Count {
            lo: 0,
            hi: 10,
            count: 4,
        })
        .unwrap();
        assert_eq!(
            to_json_values(&array).unwrap(),
            [serde_json::json!([0, 10, 4])]
        );
        let named = rmp_serde::to_vec_named(&Count {
            lo: 0,
            hi: 10,
            count: 4,
        })
        .unwrap();
        assert_eq!(
            to_json_values(&named).unwrap(),
            [serde_json::json!({"lo": 0, "hi": 10, "count": 4})]
        );
        // Two values back to back; a map with an integer key; bytes; NaN; -1.
        let mut two = Vec::new();
        rmpv::encode::write_value(
            &mut two,
            &rmpv::Value::Map(vec![(rmpv::Value::from(1), rmpv::Value::from(-1))]),
        )
        .unwrap();
        rmpv::encode::write_value(
            &mut two,
            &rmpv::Value::Array(vec![
                rmpv::Value::Binary(vec![0xff, 0]),
                rmpv::Value::F64(f64::NAN),
            ]),
        )
        .unwrap();
        assert_eq!(
            to_json_values(&two).unwrap(),
            [
                serde_json::json!({"1": -1}),
                serde_json::json!([{"bin": "ff00"}, "NaN"])
            ]
        );
    }

    #[test]
    fn what_is_not_messagepack_is_an_error_with_its_offset() {
        assert!(to_json_values(b"").is_err());
        assert!(to_json_value(b"").is_err());
        // Text is a stream of small integers: one value is asked for.
        let e = to_json_value(b"exit code 1\n").unwrap_err();
        assert!(format!("{e:#}").contains("--all"), "{e:#}");
        assert_eq!(
            to_json_value(&[0x93, 1, 2, 3]).unwrap(),
            serde_json::json!([1, 2, 3])
        );
        // A value cut short after a first whole one: a str8 of 5 bytes with 1.
        let e = to_json_values(&[0x01, 0xd9, 5, b'a']).unwrap_err();
        assert!(format!("{e:#}").contains("at byte 1"), "{e:#}");
        // A 3-element array with one element.
        assert!(to_json_values(&[0x93, 0x01]).is_err());
    }
}
