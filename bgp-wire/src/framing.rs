//! Message framing: finding message boundaries in a byte stream and the
//! RFC 4271 6.1 header checks. Parsing of bodies lives elsewhere.

use crate::error::DecodeError;
use crate::iana::MessageType;
use crate::message::{HEADER_LEN, MAX_EXT_LEN, MAX_LEN};

/// Length of the first complete message in `buf`: `Ok(None)` when more
/// bytes are needed, `Ok(Some(n))` when `buf[..n]` is one message. The
/// header is checked as soon as it is complete (RFC 4271 6.1), so a
/// garbage stream fails without waiting for a body. `extended_msg`: RFC
/// 8654 extended messages negotiated (maximum 65535 instead of 4096).
pub fn frame_len(
    buf: &[u8],
    extended_msg: bool,
) -> Result<Option<usize>, DecodeError> {
    if buf.len() < HEADER_LEN {
        // Fail early on a bad marker even before the header is complete.
        if let Some(i) = buf.iter().take(16).position(|b| *b != 0xff) {
            return Err(DecodeError::BadMarker { offset: i });
        }
        return Ok(None);
    }
    check_header(buf, extended_msg)?;
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    Ok((buf.len() >= len).then_some(len))
}

/// RFC 4271 6.1 header checks on `buf` (at least 19 octets): marker,
/// length bounds for the type, and type.
pub(crate) fn check_header(
    buf: &[u8],
    extended_msg: bool,
) -> Result<MessageType, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::BadLength {
            offset: 16,
            msg_type: 0,
            length: buf.len() as u16,
            min: HEADER_LEN as u16,
            max: MAX_LEN as u16,
        });
    }
    // RFC 4271 4.1: "This 16-octet field ... MUST be set to all ones."
    if let Some(i) = buf[..16].iter().position(|b| *b != 0xff) {
        return Err(DecodeError::BadMarker { offset: i });
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]);
    let code = buf[18];
    let msg_type =
        MessageType::from_repr(code).ok_or(DecodeError::BadType {
            offset: 18,
            msg_type: code,
        })?;
    let ext_max = if extended_msg { MAX_EXT_LEN } else { MAX_LEN };
    // RFC 4271 6.1: lengths per type; RFC 8654 4: OPEN and KEEPALIVE
    // never exceed 4096 octets.
    let (min, max) = match msg_type {
        MessageType::Open => (29, MAX_LEN),
        MessageType::Update => (23, ext_max),
        MessageType::Notification => (21, ext_max),
        MessageType::Keepalive => (19, 19),
        // RFC 7313 5 handles a wrong ROUTE-REFRESH length with its own
        // error, so only the general bound applies here.
        MessageType::RouteRefresh => (19, ext_max),
    };
    if usize::from(len) < min || usize::from(len) > max {
        return Err(DecodeError::BadLength {
            offset: 16,
            msg_type: code,
            length: len,
            min: min as u16,
            max: max as u16,
        });
    }
    Ok(msg_type)
}
