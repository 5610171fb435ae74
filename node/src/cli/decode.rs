//! `chorus decode`: prints a MessagePack file (a task's input or output) as
//! JSON, so that outputs of typed tasks can be read without writing code.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::author::output::{to_json_value, to_json_values};
use anyhow::{Context, bail};

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
    .map_err(|e| anyhow::anyhow!("{} is not MessagePack: {e}", args.file.display()))?;
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
