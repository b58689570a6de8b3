//! The BFD Control packet (RFC 5880 section 4.1): a fixed 24-octet
//! header, decoded with the reception checks of section 6.8.6 that need
//! no session state. Authentication (the A bit) is not supported, so a
//! packet carrying it is rejected as section 6.8.6 requires of a session
//! with no authentication in use.

use bytes::{Buf, BufMut, BytesMut};

/// Length of a Control packet without authentication section.
pub const CONTROL_LEN: usize = 24;
/// The only protocol version (RFC 5880 section 4.1).
pub const VERSION: u8 = 1;

/// bfd.SessionState and the State field (RFC 5880 section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(b: u8) -> State {
        match b & 0x3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    /// The name shown by `margayctl node status`.
    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

/// The Diagnostic field (RFC 5880 section 4.1); values 9-31 are
/// reserved and kept as they came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    None,
    ControlDetectionExpired,
    EchoFailed,
    NeighborDown,
    ForwardingReset,
    PathDown,
    ConcatenatedPathDown,
    AdminDown,
    ReverseConcatenatedPathDown,
    Reserved(u8),
}

impl Diag {
    fn from_bits(b: u8) -> Diag {
        match b & 0x1f {
            0 => Diag::None,
            1 => Diag::ControlDetectionExpired,
            2 => Diag::EchoFailed,
            3 => Diag::NeighborDown,
            4 => Diag::ForwardingReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdminDown,
            8 => Diag::ReverseConcatenatedPathDown,
            other => Diag::Reserved(other),
        }
    }

    fn bits(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::ControlDetectionExpired => 1,
            Diag::EchoFailed => 2,
            Diag::NeighborDown => 3,
            Diag::ForwardingReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdminDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Reserved(b) => b & 0x1f,
        }
    }
}

/// One BFD Control packet; intervals are in microseconds, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diag,
    pub state: State,
    /// P: the sender asks for a Final (a Poll Sequence is running).
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: the sender's BFD does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// D: the sender wishes to run Demand mode.
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discr: u32,
    pub your_discr: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

/// Why a received packet is discarded (RFC 5880 section 6.8.6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} octets, shorter than a Control packet (24)")]
    Short(usize),
    #[error("version {0}; only version 1 exists")]
    Version(u8),
    #[error("Length field {len} but {available} octets were received")]
    Length { len: u8, available: usize },
    #[error("Length field {0} is below the 24-octet minimum")]
    LengthTooSmall(u8),
    #[error("authentication (A bit) is not supported")]
    Authentication,
    #[error("Detect Mult is zero")]
    ZeroDetectMult,
    #[error("Multipoint (M) bit set")]
    Multipoint,
    #[error("My Discriminator is zero")]
    ZeroMyDiscr,
    #[error("Your Discriminator is zero in state {0:?}")]
    ZeroYourDiscr(State),
    #[error("both Poll and Final are set")]
    PollAndFinal,
}

// ===== impl ControlPacket =====

impl ControlPacket {
    /// Decode and validate one datagram's payload.
    pub fn decode(buf: &[u8]) -> Result<ControlPacket, DecodeError> {
        if buf.len() < CONTROL_LEN {
            return Err(DecodeError::Short(buf.len()));
        }
        let mut b = buf;
        let vd = b.get_u8();
        let flags = b.get_u8();
        let detect_mult = b.get_u8();
        let len = b.get_u8();
        // RFC 5880 6.8.6: "If the version number is not correct (1), the
        // packet MUST be discarded."
        let version = vd >> 5;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let auth = flags & 0x04 != 0;
        // "If the Length field is less than the minimum correct value (24
        // if the A bit is clear, or 26 if the A bit is set), the packet
        // MUST be discarded."
        if usize::from(len) < CONTROL_LEN {
            return Err(DecodeError::LengthTooSmall(len));
        }
        // "If the Length field is greater than the payload of the
        // encapsulating protocol, the packet MUST be discarded."
        if usize::from(len) > buf.len() {
            return Err(DecodeError::Length {
                len,
                available: buf.len(),
            });
        }
        // "If the A bit is set and no authentication is in use
        // (bfd.AuthType is zero), the packet MUST be discarded."
        if auth {
            return Err(DecodeError::Authentication);
        }
        // "If the Detect Mult field is zero, the packet MUST be
        // discarded."
        if detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        // "If the Multipoint (M) bit is nonzero, the packet MUST be
        // discarded."
        if flags & 0x01 != 0 {
            return Err(DecodeError::Multipoint);
        }
        let state = State::from_bits(flags >> 6);
        let pkt = ControlPacket {
            diag: Diag::from_bits(vd),
            state,
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult,
            my_discr: b.get_u32(),
            your_discr: b.get_u32(),
            desired_min_tx_us: b.get_u32(),
            required_min_rx_us: b.get_u32(),
            required_min_echo_rx_us: b.get_u32(),
        };
        // "If the My Discriminator field is zero, the packet MUST be
        // discarded."
        if pkt.my_discr == 0 {
            return Err(DecodeError::ZeroMyDiscr);
        }
        // "If the Your Discriminator field is zero and the State field is
        // not Down or AdminDown, the packet MUST be discarded."
        if pkt.your_discr == 0
            && !matches!(state, State::Down | State::AdminDown)
        {
            return Err(DecodeError::ZeroYourDiscr(state));
        }
        // Section 6.5: a system "MUST NOT set both the Poll and Final
        // bits"; such a packet is malformed.
        if pkt.poll && pkt.final_ {
            return Err(DecodeError::PollAndFinal);
        }
        Ok(pkt)
    }

    /// Append the 24-octet encoding (never with authentication).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(VERSION << 5 | self.diag.bits());
        let mut flags = (self.state as u8) << 6;
        for (set, bit) in [
            (self.poll, 0x20),
            (self.final_, 0x10),
            (self.control_plane_independent, 0x08),
            (self.demand, 0x02),
        ] {
            if set {
                flags |= bit;
            }
        }
        out.put_u8(flags);
        out.put_u8(self.detect_mult);
        out.put_u8(CONTROL_LEN as u8);
        out.put_u32(self.my_discr);
        out.put_u32(self.your_discr);
        out.put_u32(self.desired_min_tx_us);
        out.put_u32(self.required_min_rx_us);
        out.put_u32(self.required_min_echo_rx_us);
    }

    /// The encoding as a fresh buffer.
    pub fn to_bytes(&self) -> bytes::Bytes {
        let mut b = BytesMut::with_capacity(CONTROL_LEN);
        self.encode(&mut b);
        b.freeze()
    }
}

#[cfg(test)]
mod tests;
