//! The plugin side: relays one invocation to the node agent.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

use super::{CNI_VARS, Reply, Request};

/// How long the plugin waits for the agent's answer. An ADD that waits
/// for a block claim against a slow datastore takes seconds; beyond this
/// the runtime is better served by an error it retries.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// How a relay ended.
#[derive(Debug)]
pub enum Relay {
    /// The agent answered.
    Reply(Reply),
    /// The agent did not take the request (not running, socket missing,
    /// refused before the whole request was sent): nothing was done, so
    /// the plugin does the work itself.
    NotTaken(io::Error),
    /// The request reached the agent but no answer came back: the agent
    /// may have acted on it.
    Lost(io::Error),
}

/// The CNI_* variables of this process.
pub fn process_env() -> BTreeMap<String, String> {
    CNI_VARS
        .iter()
        .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
        .collect()
}

/// Sends `env` and `stdin` to the agent at `socket`, with a handle of the
/// namespace at `netns`. The agent never opens CNI_NETNS by path (its
/// mount and PID namespaces may give the path another meaning, e.g.
/// cri-dockerd's `/proc/PID/ns/net`), so a namespace this process cannot
/// open is not relayed: the plugin then does the work (or reports the
/// error) itself, where the path means what the runtime meant.
pub fn relay(
    socket: &Path,
    env: BTreeMap<String, String>,
    stdin: &[u8],
    netns: Option<&Path>,
) -> Relay {
    let request = Request {
        env,
        stdin: String::from_utf8_lossy(stdin).into_owned(),
    };
    let bytes = match serde_json::to_vec(&request) {
        Ok(b) => b,
        Err(e) => return Relay::NotTaken(io::Error::other(e)),
    };
    let ns = match netns.map(File::open).transpose() {
        Ok(ns) => ns,
        Err(e) => return Relay::NotTaken(e),
    };
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => return Relay::NotTaken(e),
    };
    if let Err(e) = send(&mut stream, &bytes, ns.as_ref()) {
        // The agent acts only on a complete request.
        return Relay::NotTaken(e);
    }
    match receive(&mut stream) {
        Ok(reply) => Relay::Reply(reply),
        Err(e) => Relay::Lost(e),
    }
}

fn send(
    stream: &mut UnixStream,
    bytes: &[u8],
    ns: Option<&File>,
) -> io::Result<()> {
    let fds = ns.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage> = fds
        .iter()
        .map(|fds| ControlMessage::ScmRights(fds))
        .collect();
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    stream.write_all(&bytes[sent..])?;
    stream.shutdown(Shutdown::Write)
}

fn receive(stream: &mut UnixStream) -> io::Result<Reply> {
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let mut text = Vec::new();
    stream.read_to_end(&mut text)?;
    if text.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the agent closed the connection without an answer",
        ));
    }
    serde_json::from_slice(&text).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, format!("bad answer: {e}"))
    })
}
