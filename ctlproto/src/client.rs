//! A one-shot, blocking client for bgpd's control socket: write one
//! request line, read one response line. Used by margayctl, the node
//! agent's readiness probe and the lab.

use std::io::{self, BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{
    DecodeError, InvalidObject, PeerStatus, RejectedRoute, Request, Response,
    RibEntry, decode_line, encode_line,
};

/// How long to wait for bgpd; it answers from memory, so a slow answer
/// means it is stuck.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a question to bgpd got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Nothing listens at the path (no file, or a stale socket file).
    #[error(
        "cannot reach bgpd: is bgpd running? looked for {} ({source}); \
         pass --bgpd-socket PATH if it listens elsewhere",
        path.display()
    )]
    NotRunning {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Connected, but reading or writing failed (or timed out).
    #[error("talking to bgpd at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// bgpd closed the connection without answering.
    #[error("bgpd at {} closed the connection without answering", path.display())]
    NoAnswer { path: PathBuf },
    /// The answer is not a control-protocol response.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// bgpd answered with an error.
    #[error("bgpd answered with an error: {0}")]
    Remote(String),
    /// bgpd answered a different question.
    #[error("bgpd sent an unexpected {got} response to a {asked} request")]
    Unexpected {
        asked: &'static str,
        got: &'static str,
    },
}

/// Sends `request` to the socket at `path` and returns bgpd's answer.
pub fn query(path: &Path, request: &Request) -> Result<Response, SocketError> {
    let io_err = |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| {
        SocketError::NotRunning {
            path: path.to_path_buf(),
            source,
        }
    })?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    stream
        .write_all(encode_line(request).as_bytes())
        .map_err(io_err)?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(io_err)?;
    if line.trim().is_empty() {
        return Err(SocketError::NoAnswer {
            path: path.to_path_buf(),
        });
    }
    match decode_line::<Response>(&line)? {
        Response::Error { message } => Err(SocketError::Remote(message)),
        other => Ok(other),
    }
}

/// The peer table.
pub fn peers(path: &Path) -> Result<Vec<PeerStatus>, SocketError> {
    match query(path, &Request::Peers)? {
        Response::Peers { peers } => Ok(peers),
        other => Err(unexpected("peers", &other)),
    }
}

/// The Loc-RIB with every candidate path.
pub fn rib(path: &Path) -> Result<Vec<RibEntry>, SocketError> {
    match query(path, &Request::Rib)? {
        Response::Rib { routes } => Ok(routes),
        other => Err(unexpected("rib", &other)),
    }
}

/// Restart a held-Idle session or reset an Established one; returns what
/// bgpd did.
pub fn reset_peer(path: &Path, peer: &str) -> Result<String, SocketError> {
    let req = Request::ResetPeer {
        peer: peer.to_string(),
    };
    match query(path, &req)? {
        Response::Done { message } => Ok(message),
        other => Err(unexpected("reset_peer", &other)),
    }
}

/// The datastore objects bgpd left out because they are bad.
pub fn invalid(path: &Path) -> Result<Vec<InvalidObject>, SocketError> {
    match query(path, &Request::Invalid)? {
        Response::Invalid { objects } => Ok(objects),
        other => Err(unexpected("invalid", &other)),
    }
}

/// The routes import refused whose prefix holds `address` (all with
/// `None`).
pub fn rejected(
    path: &Path,
    address: Option<IpAddr>,
) -> Result<Vec<RejectedRoute>, SocketError> {
    match query(path, &Request::Rejected { address })? {
        Response::Rejected { routes } => Ok(routes),
        other => Err(unexpected("rejected", &other)),
    }
}

fn unexpected(asked: &'static str, got: &Response) -> SocketError {
    let got = match got {
        Response::Peers { .. } => "peers",
        Response::Rib { .. } => "rib",
        Response::Done { .. } => "done",
        Response::Invalid { .. } => "invalid",
        Response::Rejected { .. } => "rejected",
        Response::Error { .. } => "error",
    };
    SocketError::Unexpected { asked, got }
}
