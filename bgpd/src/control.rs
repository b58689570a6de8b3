//! The Unix control socket (protocol in margay-ctlproto): one JSON request
//! per line, one response line, or the RIB stream after `subscribe_rib`.

use std::path::Path;

use margay_ctlproto::{Request, Response, decode_line, encode_line};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::tasks::Input;

/// Bind the socket (replacing a stale one) and serve clients forever.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path)
}

/// Accept control clients.
pub async fn serve(l: UnixListener, inputs: mpsc::UnboundedSender<Input>) {
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                tokio::spawn(client(s, inputs.clone()));
            }
            Err(e) => {
                tracing::warn!("control accept: {e}");
                return;
            }
        }
    }
}

async fn client(s: UnixStream, inputs: mpsc::UnboundedSender<Input>) {
    let (rd, mut wr) = s.into_split();
    let mut lines = BufReader::new(rd).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let req = match decode_line::<Request>(&line) {
            Ok(r) => r,
            Err(e) => {
                let r = Response::Error {
                    message: e.to_string(),
                };
                if wr.write_all(encode_line(&r).as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
        };
        if req == Request::SubscribeRib {
            let (tx, mut rx) = mpsc::unbounded_channel();
            if inputs.send(Input::Subscribe(tx)).is_err() {
                return;
            }
            while let Some(ev) = rx.recv().await {
                if wr.write_all(encode_line(&ev).as_bytes()).await.is_err() {
                    return;
                }
            }
            return;
        }
        let (tx, rx) = oneshot::channel();
        if inputs.send(Input::Query(req, tx)).is_err() {
            return;
        }
        let Ok(resp) = rx.await else { return };
        if wr.write_all(encode_line(&resp).as_bytes()).await.is_err() {
            return;
        }
    }
}
