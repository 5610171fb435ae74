//! The wire codec: a 4-byte big-endian length prefix, then a MessagePack body.
//!
//! Every frame has a size cap checked *before* the body is read, so an oversized
//! length prefix costs the sender a stream, not us memory. Decoding never panics:
//! garbage becomes [`FrameError::Decode`]. The pure functions [`encode`] and
//! [`decode`] are what the async helpers use, so tests and fuzzers reach the same code.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Cap on one frame of ring traffic (requests and answers of ring maintenance).
pub const RING_FRAME_CAP: usize = 1 << 20;

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// What can go wrong reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the cap; the body was not read.
    #[error("frame of {len} bytes exceeds the cap of {cap} bytes")]
    TooLarge {
        /// Announced (or encoded) length.
        len: usize,
        /// The cap in force.
        cap: usize,
    },
    /// The body is not a valid message of the expected type (garbage or an unknown message).
    #[error("malformed frame: {0}")]
    Decode(String),
    /// The value could not be encoded.
    #[error("could not encode frame: {0}")]
    Encode(String),
    /// The stream ended before a whole frame arrived.
    #[error("stream ended after {got} of {want} bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// The QUIC stream failed while reading or writing.
    #[error("stream error: {0}")]
    Stream(String),
    /// The reader cannot take a frame of this size now (its memory for
    /// requests in flight is spoken for); the body was not read. Try later.
    #[error("busy: no room for a frame of {len} bytes now")]
    Busy {
        /// Announced length.
        len: usize,
    },
    /// The sender did not deliver a whole frame in time.
    #[error("no whole frame within {0:?}")]
    TimedOut(std::time::Duration),
}

impl FrameError {
    /// A short, stable name for the kind of error (for counters and logs).
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::TooLarge { .. } => "oversized",
            FrameError::Decode(_) => "malformed",
            FrameError::Encode(_) => "encode",
            FrameError::Truncated { .. } => "truncated",
            FrameError::Stream(_) => "stream",
            FrameError::Busy { .. } => "busy",
            FrameError::TimedOut(_) => "read_timeout",
        }
    }
}

/// Encodes `msg` as one frame (header + body), refusing bodies over `cap`.
pub fn encode<T: Serialize>(msg: &T, cap: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; HEADER_LEN];
    rmp_serde::encode::write_named(&mut out, msg).map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = out.len() - HEADER_LEN;
    if len > cap {
        return Err(FrameError::TooLarge { len, cap });
    }
    let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge { len, cap })?;
    out[..HEADER_LEN].copy_from_slice(&len32.to_be_bytes());
    Ok(out)
}

/// The length of `msg`'s frame body, counted without keeping the bytes:
/// what [`encode`] compares with its cap.
pub fn encoded_len<T: Serialize>(msg: &T) -> Result<usize, FrameError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    rmp_serde::encode::write_named(&mut count, msg)
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    Ok(count.0)
}

/// Reads the body length from a header, refusing lengths over `cap`.
pub fn body_len(header: [u8; HEADER_LEN], cap: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > cap {
        return Err(FrameError::TooLarge { len, cap });
    }
    Ok(len)
}

/// Decodes one message from a frame body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    rmp_serde::from_slice(body).map_err(|e| FrameError::Decode(e.to_string()))
}

/// Decodes one whole frame (header + body) from the front of `buf`.
///
/// Returns the message and the number of bytes used.
pub fn decode_frame<T: DeserializeOwned>(buf: &[u8], cap: usize) -> Result<(T, usize), FrameError> {
    let header: [u8; HEADER_LEN] = buf
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated {
            got: buf.len(),
            want: HEADER_LEN,
        })?;
    let len = body_len(header, cap)?;
    let body = buf
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or(FrameError::Truncated {
            got: buf.len(),
            want: HEADER_LEN + len,
        })?;
    Ok((decode(body)?, HEADER_LEN + len))
}

/// Reads one frame from a QUIC stream.
pub async fn read<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    cap: usize,
) -> Result<T, FrameError> {
    read_sized(recv, cap).await.map(|(msg, _)| msg)
}

/// Reads one frame from a QUIC stream; also returns its size in bytes (header included).
pub async fn read_sized<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    cap: usize,
) -> Result<(T, usize), FrameError> {
    read_reserved(recv, cap, |_| Ok(()))
        .await
        .map(|(msg, size, ())| (msg, size))
}

/// Reads one frame from a QUIC stream, first asking `reserve` for room for a
/// body of the announced length (under `cap`). `reserve` runs before a byte of
/// the body is read; its error (say [`FrameError::Busy`]) ends the read, and
/// its value (say a semaphore permit) is handed back with the message so the
/// caller can hold it while it serves the request.
pub async fn read_reserved<T: DeserializeOwned, R>(
    recv: &mut quinn::RecvStream,
    cap: usize,
    reserve: impl FnOnce(usize) -> Result<R, FrameError>,
) -> Result<(T, usize, R), FrameError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact(recv, &mut header).await?;
    let len = body_len(header, cap)?;
    let reservation = reserve(len)?;
    // Grow with what actually arrives: a length prefix alone (under the cap)
    // does not make the reader allocate the whole frame up front.
    let mut body = Vec::with_capacity(len.min(64 << 10));
    let mut chunk = vec![0u8; len.min(64 << 10)];
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        read_exact(recv, &mut chunk[..want]).await?;
        body.extend_from_slice(&chunk[..want]);
    }
    Ok((decode(&body)?, HEADER_LEN + len, reservation))
}

/// Writes one frame to a QUIC stream (does not finish the stream); returns its size
/// in bytes (header included).
pub async fn write<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
    cap: usize,
) -> Result<usize, FrameError> {
    let bytes = encode(msg, cap)?;
    send.write_all(&bytes)
        .await
        .map_err(|e| FrameError::Stream(e.to_string()))?;
    Ok(bytes.len())
}

async fn read_exact(recv: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<(), FrameError> {
    let want = buf.len();
    recv.read_exact(buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(got) => FrameError::Truncated { got, want },
        quinn::ReadExactError::ReadError(e) => FrameError::Stream(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Msg {
        Ping,
        Data { bytes: Vec<u8> },
    }

    #[test]
    fn round_trip() {
        let m = Msg::Data {
            bytes: vec![1, 2, 3],
        };
        let f = encode(&m, 100).unwrap();
        let (back, used): (Msg, usize) = decode_frame(&f, 100).unwrap();
        assert_eq!(back, m);
        assert_eq!(used, f.len());
    }

    #[test]
    fn oversized_prefix_is_refused_before_reading() {
        let mut f = vec![0xff, 0xff, 0xff, 0xff];
        f.extend_from_slice(b"whatever");
        assert!(matches!(
            decode_frame::<Msg>(&f, RING_FRAME_CAP),
            Err(FrameError::TooLarge { .. })
        ));
        let big = Msg::Data {
            bytes: vec![0; 200],
        };
        assert!(matches!(
            encode(&big, 100),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_and_unknown_messages_are_decode_errors() {
        let mut seed = 0x5eed_u64;
        for n in 0..2000usize {
            let len = n % 64;
            let mut body = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                body.push((seed >> 56) as u8);
            }
            let mut f = (len as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&body);
            // Must not panic; almost all of these are errors.
            let _ = decode_frame::<Msg>(&f, RING_FRAME_CAP);
        }
        let unknown = encode(&"NoSuchMessage", 100).unwrap();
        assert!(matches!(
            decode_frame::<Msg>(&unknown, 100),
            Err(FrameError::Decode(_))
        ));
        assert!(matches!(
            decode_frame::<Msg>(&[0, 0, 0, 9, 1], 100),
            Err(FrameError::Truncated { .. })
        ));
    }
}
