//! Frames: how a message travels on a QUIC stream, and how bytes from a peer become a message.
//!
//! One message is one stream: the stream's whole content is the message's canonical rkyv archive, and the
//! stream's end marks the frame's end, so no length prefix is needed; the reader stops at
//! `max_frame_size` bytes. The answer on a bidirectional stream is either empty (an **ack**: the receiver's
//! application accepted the message) or `REPLY_TAG` followed by a reply archive. Every archive is checked
//! with bytecheck on an aligned copy before any field is read: a peer's bytes are hostile (STYLE.md).

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

use crate::error::NetworkError;

/// First byte of a non-empty answer: a reply archive follows.
pub(crate) const REPLY_TAG: u8 = 1;

/// What the transport can carry: an rkyv type whose archive is validated before use.
pub trait Message:
    Sized
    + rkyv::Archive<
        Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                      + rkyv::Deserialize<Self, HighDeserializer<rancor::Error>>,
    > + for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
    + Send
    + 'static
{
}

impl<T> Message for T where
    T: rkyv::Archive<
            Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                          + rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
        > + for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
        + Send
        + 'static
{
}

/// Why a frame was refused; each reason has its own counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    Oversized,
    Malformed(String),
}

/// The frame of a message: the archive itself, not a copy of it.
pub fn encode<M: Message>(message: &M) -> Result<bytes::Bytes, NetworkError> {
    rkyv::to_bytes::<rancor::Error>(message)
        .map(bytes::Bytes::from_owner)
        .map_err(|e| NetworkError::Encode { type_name: std::any::type_name::<M>(), reason: e.to_string() })
}

/// A frame in memory aligned as rkyv reads archives in place.
pub(crate) type AlignedFrame = AlignedVec<16>;

/// A message from an untrusted frame: refused if longer than `max_frame_size` or if bytecheck rejects it.
pub(crate) fn decode<M: Message>(frame: &[u8], max_frame_size: usize) -> Result<M, FrameError> {
    if frame.len() > max_frame_size {
        return Err(FrameError::Oversized);
    }
    // Bytes from a socket may not be aligned.
    let mut aligned = AlignedFrame::with_capacity(frame.len());
    aligned.extend_from_slice(frame);
    decode_aligned(&aligned).map_err(FrameError::Malformed)
}

/// A message from an untrusted frame already aligned (its size checked by whoever read it): the reason
/// bytecheck refused it otherwise.
pub(crate) fn decode_aligned<M: Message>(frame: &AlignedFrame) -> Result<M, String> {
    rkyv::from_bytes::<M, rancor::Error>(frame).map_err(|e| e.to_string())
}

/// The answer frame carrying `reply`.
pub(crate) fn encode_reply<M: Message>(reply: &M) -> Result<Vec<u8>, NetworkError> {
    let archive = encode(reply)?;
    let mut frame = Vec::with_capacity(1 + archive.len());
    frame.push(REPLY_TAG);
    frame.extend_from_slice(&archive);
    Ok(frame)
}

/// What came back on a bidirectional stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<M> {
    /// The receiver's application accepted the message.
    Ack,
    /// The receiver answered with a message.
    Reply(M),
}

/// Reads an answer frame: empty is an ack, `REPLY_TAG` + archive is a reply, anything else is malformed.
pub(crate) fn decode_response<M: Message>(frame: &[u8], max_frame_size: usize) -> Result<Response<M>, FrameError> {
    match frame.split_first() {
        None => Ok(Response::Ack),
        Some((&REPLY_TAG, archive)) => decode(archive, max_frame_size).map(Response::Reply),
        Some((tag, _)) => Err(FrameError::Malformed(format!("unknown answer tag {tag}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    struct Ping {
        seq: u64,
        body: Vec<u8>,
    }

    #[test]
    fn round_trip() {
        let ping = Ping { seq: 7, body: vec![1, 2, 3] };
        let frame = encode(&ping).unwrap();
        assert_eq!(decode::<Ping>(&frame, 1024), Ok(ping));
    }

    #[test]
    fn short_and_oversized_frames_are_refused() {
        assert!(matches!(decode::<Ping>(&[1, 2, 3], 1024), Err(FrameError::Malformed(_))));
        let frame = encode(&Ping { seq: 1, body: vec![0; 100] }).unwrap();
        assert_eq!(decode::<Ping>(&frame, 50), Err(FrameError::Oversized));
    }

    #[test]
    fn a_length_pointing_outside_the_frame_is_malformed() {
        let mut frame = encode(&Ping { seq: 1, body: vec![9; 8] }).unwrap().to_vec();
        // Corrupt every byte in turn: bytecheck must refuse or accept, never read out of bounds.
        for i in 0..frame.len() {
            frame[i] ^= 0xff;
            let _ = decode::<Ping>(&frame, 1024);
            frame[i] ^= 0xff;
        }
        let len = frame.len();
        frame[len - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode::<Ping>(&frame, 1024).is_err());
    }

    #[test]
    fn responses() {
        assert_eq!(decode_response::<Ping>(&[], 64), Ok(Response::Ack));
        let reply = encode_reply(&Ping { seq: 2, body: vec![] }).unwrap();
        assert_eq!(decode_response::<Ping>(&reply, 64), Ok(Response::Reply(Ping { seq: 2, body: vec![] })));
        assert!(matches!(decode_response::<Ping>(&[9, 0], 64), Err(FrameError::Malformed(_))));
    }
}
