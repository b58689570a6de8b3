//! The BGP message envelope (RFC 4271 4.1): header, type dispatch and
//! whole-message encode/decode.

use bytes::{BufMut, BytesMut};

use crate::DecodeCxt;
use crate::error::{DecodeError, EncodeError};
use crate::framing::check_header;
use crate::iana::MessageType;
use crate::notification::NotificationMsg;
use crate::open::OpenMsg;
use crate::refresh::RouteRefreshMsg;
use crate::update::UpdateMsg;

/// Marker (16) + length (2) + type (1).
pub const HEADER_LEN: usize = 19;
/// RFC 4271 4.1 maximum message size.
pub const MAX_LEN: usize = 4096;
/// RFC 8654 maximum message size once extended messages are negotiated.
pub const MAX_EXT_LEN: usize = 65535;

/// A BGP message.
///
/// `Update` is not boxed: UPDATEs are nearly all the traffic, and a box
/// would cost an allocation per message for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(OpenMsg),
    Update(UpdateMsg),
    Notification(NotificationMsg),
    Keepalive,
    RouteRefresh(RouteRefreshMsg),
}

impl Message {
    /// The message's type code.
    pub fn msg_type(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::Open,
            Message::Update(_) => MessageType::Update,
            Message::Notification(_) => MessageType::Notification,
            Message::Keepalive => MessageType::Keepalive,
            Message::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }

    /// Decodes one complete message (header included), as delimited by
    /// [`crate::frame_len`]. `frame` must be exactly one message.
    pub fn decode(
        frame: &[u8],
        cxt: &DecodeCxt,
    ) -> Result<Message, DecodeError> {
        let msg_type = check_header(frame, cxt.extended_msg)?;
        let len = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
        if frame.len() != len {
            return Err(DecodeError::BadLength {
                offset: 16,
                msg_type: msg_type as u8,
                length: len as u16,
                min: frame.len() as u16,
                max: frame.len() as u16,
            });
        }
        let body = &frame[HEADER_LEN..];
        Ok(match msg_type {
            MessageType::Open => Message::Open(OpenMsg::decode(body)?),
            MessageType::Update => {
                Message::Update(UpdateMsg::decode(body, cxt)?)
            }
            MessageType::Notification => Message::Notification(
                NotificationMsg::decode(body, HEADER_LEN)?,
            ),
            MessageType::Keepalive => Message::Keepalive,
            MessageType::RouteRefresh => {
                Message::RouteRefresh(RouteRefreshMsg::decode(frame)?)
            }
        })
    }

    /// Appends the encoded message (header included) to `out`. On error
    /// `out` is left as it was.
    pub fn encode(
        &self,
        cxt: &DecodeCxt,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let start = out.len();
        put_header(out, self.msg_type());
        let r = match self {
            Message::Open(m) => m.encode_body(out),
            Message::Update(m) => m.encode_body(cxt, out),
            Message::Notification(m) => {
                m.encode_body(out);
                Ok(())
            }
            Message::Keepalive => Ok(()),
            Message::RouteRefresh(m) => {
                m.encode_body(out);
                Ok(())
            }
        };
        // RFC 8654 4: OPEN and KEEPALIVE stay within 4096 octets even
        // when extended messages are negotiated.
        let max = match self {
            Message::Open(_) | Message::Keepalive => MAX_LEN,
            _ if cxt.extended_msg => MAX_EXT_LEN,
            _ => MAX_LEN,
        };
        let r = r.and_then(|()| finish_header(out, start, max));
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// Convenience: encodes into a fresh buffer.
    pub fn to_bytes(&self, cxt: &DecodeCxt) -> Result<BytesMut, EncodeError> {
        let mut b = BytesMut::new();
        self.encode(cxt, &mut b)?;
        Ok(b)
    }
}

/// Appends a header with a zero length, to be fixed by `finish_header`.
pub(crate) fn put_header(out: &mut BytesMut, t: MessageType) {
    out.put_slice(&[0xff; 16]);
    out.put_u16(0);
    out.put_u8(t as u8);
}

/// Writes the length of the message starting at `start`, checking `max`.
pub(crate) fn finish_header(
    out: &mut BytesMut,
    start: usize,
    max: usize,
) -> Result<(), EncodeError> {
    let len = out.len() - start;
    if len > max {
        return Err(EncodeError::TooLong { length: len, max });
    }
    out[start + 16..start + 18].copy_from_slice(&(len as u16).to_be_bytes());
    Ok(())
}
