//! `tokio_util::codec` framing for a BGP TCP stream (feature `codec`).
//!
//! Framing only finds boundaries ([`crate::frame_len`]); each frame is then
//! decoded with [`Message::decode`] using the session's current contexts,
//! which the owner updates after the OPEN exchange via `rx` / `tx`.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::DecodeCxt;
use crate::error::{DecodeError, EncodeError};
use crate::framing::frame_len;
use crate::message::Message;

/// Errors of the framed stream.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
}

/// A BGP message codec. `rx` decodes what the peer sends, `tx` encodes
/// what we send (see [`crate::negotiate`]).
#[derive(Clone, Debug, Default)]
pub struct BgpCodec {
    pub rx: DecodeCxt,
    pub tx: DecodeCxt,
}

impl Decoder for BgpCodec {
    type Item = Message;
    type Error = CodecError;

    fn decode(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<Message>, CodecError> {
        let Some(len) = frame_len(src, self.rx.extended_msg)? else {
            // Reserve for the rest of the message to avoid regrowth.
            if src.len() >= 18 {
                let want = usize::from(u16::from_be_bytes([src[16], src[17]]));
                src.reserve(want.saturating_sub(src.len()));
            }
            return Ok(None);
        };
        let frame = src.split_to(len);
        Ok(Some(Message::decode(&frame, &self.rx)?))
    }
}

impl Encoder<Message> for BgpCodec {
    type Error = CodecError;

    fn encode(
        &mut self,
        msg: Message,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        msg.encode(&self.tx, dst)?;
        Ok(())
    }
}

impl Encoder<&Message> for BgpCodec {
    type Error = CodecError;

    fn encode(
        &mut self,
        msg: &Message,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        msg.encode(&self.tx, dst)?;
        Ok(())
    }
}
