//! The bgpd RIB stream client: connects to bgpd's control socket, sends
//! `SubscribeRib`, and forwards each line; reconnects when bgpd goes away.
//! Only bytes move here; what a drop means is the reconciler's business.

use std::path::PathBuf;
use std::time::Duration;

use margay_ctlproto::{Request, RibEvent, decode_line, encode_line};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// What the stream task reports to the main loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamMsg {
    /// Subscribed; a fresh snapshot follows.
    Up,
    Event(RibEvent),
    /// The connection ended (or never came); the reason, for the log.
    Down(String),
}

/// Delay between connection attempts.
const RETRY: Duration = Duration::from_millis(500);

/// Runs forever (until `tx` is closed): connect, subscribe, forward.
/// `Down` is sent once per outage: after a stream that was up, and for the
/// very first failed attempt.
pub async fn run(path: PathBuf, tx: mpsc::Sender<StreamMsg>) {
    let mut report = true;
    loop {
        let mut subscribed = false;
        let reason = match session(&path, &tx, &mut subscribed).await {
            Ok(()) => "bgpd closed the stream".to_string(),
            Err(e) => e,
        };
        if tx.is_closed() {
            return;
        }
        if subscribed || report {
            tracing::warn!(socket = %path.display(), %reason, "RIB stream down");
            if tx.send(StreamMsg::Down(reason)).await.is_err() {
                return;
            }
        }
        report = false;
        tokio::time::sleep(RETRY).await;
    }
}

/// One connection; returns when it ends.
async fn session(
    path: &PathBuf,
    tx: &mpsc::Sender<StreamMsg>,
    subscribed: &mut bool,
) -> Result<(), String> {
    let mut conn = UnixStream::connect(path)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    conn.write_all(encode_line(&Request::SubscribeRib).as_bytes())
        .await
        .map_err(|e| format!("cannot subscribe: {e}"))?;
    tracing::info!(socket = %path.display(), "subscribed to bgpd's RIB");
    tx.send(StreamMsg::Up)
        .await
        .map_err(|_| "shutting down".to_string())?;
    *subscribed = true;
    let mut lines = BufReader::new(conn).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .map_err(|e| format!("read error: {e}"))?;
        let Some(line) = line else {
            return Ok(());
        };
        if line.trim().is_empty() {
            continue;
        }
        // A line we cannot decode means we no longer agree with bgpd on
        // the stream's state: drop and resubscribe rather than guess.
        let ev: RibEvent = decode_line(&line).map_err(|e| e.to_string())?;
        tx.send(StreamMsg::Event(ev))
            .await
            .map_err(|_| "shutting down".to_string())?;
    }
}
