//! {{name}}: a Chorus task.
//!
//! Input (MessagePack on stdin): `{values: [i64]}`. Output (MessagePack on
//! stdout): `{count, sum, min, max, mean}`. An empty list or a sum that
//! overflows ends the task with exit code 1 and the reason on stderr.
//!
//! `chorus_sdk::guest::run` does the plumbing: it decodes stdin, calls the
//! function, encodes its result. Replicas compare outputs bit for bit, so the
//! task must be a pure function of its input.

use serde::{Deserialize, Serialize};

/// What one task receives.
#[derive(Debug, Deserialize)]
struct Input {
    /// The numbers to summarise.
    values: Vec<i64>,
}

/// What one task returns.
#[derive(Debug, PartialEq, Serialize)]
struct Summary {
    count: u64,
    sum: i64,
    min: i64,
    max: i64,
    mean: f64,
}

fn summarise(input: Input) -> Result<Summary, String> {
    let (&first, rest) = input
        .values
        .split_first()
        .ok_or("no values: the input needs at least one")?;
    let (mut sum, mut min, mut max) = (first, first, first);
    for &v in rest {
        sum = sum.checked_add(v).ok_or("the sum overflows a 64-bit integer")?;
        min = min.min(v);
        max = max.max(v);
    }
    let count = input.values.len() as u64;
    Ok(Summary {
        count,
        sum,
        min,
        max,
        mean: sum as f64 / count as f64,
    })
}

fn main() {
    chorus_sdk::guest::run(summarise)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_and_refuses_what_it_cannot() {
        let s = summarise(Input { values: vec![3, 1, 4, 1, 5, 9, 2, 6] }).unwrap();
        assert_eq!((s.count, s.sum, s.min, s.max, s.mean), (8, 31, 1, 9, 3.875));
        assert!(summarise(Input { values: vec![] }).is_err());
        assert!(summarise(Input { values: vec![i64::MAX, 1] }).is_err());
    }
}
