//! `node status`: the BGP peer table in the shape of `calicoctl node status`
//! (one boxed table per address family), plus prefix counters, and the
//! datastore objects bgpd left out because they are bad.

use std::path::Path;

use margay_ctlproto::{InvalidObject, PeerStatus};

use crate::output::{self, Format, OutputError, Table};
use margay_ctlproto::client::{self as socket, SocketError};

/// Why `node status` failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Asks bgpd at `socket_path` for its peers and renders them.
pub fn node_status(
    socket_path: &Path,
    format: Format,
    now_unix: u64,
) -> Result<String, StatusError> {
    let peers = socket::peers(socket_path)?;
    Ok(match format {
        Format::Yaml => output::to_yaml_documents(&[&peers])?,
        Format::Json => output::to_json(&[&peers])?,
        Format::Table | Format::Wide => {
            let mut out = format!(
                "margay bgpd is running (control socket {}).\n",
                socket_path.display()
            );
            out.push_str(&render(&peers, format == Format::Wide, now_unix));
            // A bgpd without this request answers an error: say so
            // rather than fail the peer table.
            match socket::invalid(socket_path) {
                Ok(objects) => out.push_str(&render_invalid(&objects)),
                Err(e) => out.push_str(&format!(
                    "\nInvalid datastore objects: unknown ({e})\n"
                )),
            }
            out
        }
    })
}

/// The datastore objects bgpd left out as bad, one per line with kind,
/// name, field and why; nothing when there are none.
pub fn render_invalid(objects: &[InvalidObject]) -> String {
    if objects.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\nInvalid datastore objects, left out (everything else is \
         configured):\n",
    );
    for o in objects {
        out.push_str(&format!("  {o}\n"));
    }
    out
}

/// The text tables for `peers`, IPv4 first.
pub fn render(peers: &[PeerStatus], wide: bool, now_unix: u64) -> String {
    let mut out = String::new();
    for (family, is_v4) in [("IPv4", true), ("IPv6", false)] {
        let mut mine: Vec<&PeerStatus> = peers
            .iter()
            .filter(|p| p.address.is_ipv4() == is_v4)
            .collect();
        mine.sort_by_key(|p| (p.address, p.port));
        out.push_str(&format!("{family} BGP status\n"));
        if mine.is_empty() {
            out.push_str(&format!("No {family} peers found.\n\n"));
            continue;
        }
        let mut headers = vec![
            "PEER ADDRESS",
            "PEER TYPE",
            "STATE",
            "SINCE",
            "INFO",
            "RECEIVED",
            "ACCEPTED",
            "ADVERTISED",
        ];
        if wide {
            headers.extend(["NAME", "LOCAL AS", "REMOTE AS"]);
        }
        let mut t = Table::new(headers);
        for p in mine {
            let mut row = vec![
                address(p),
                p.peer_type.describe().to_string(),
                state_word(&p.state).to_string(),
                since(p.since_unix, now_unix),
                info(p, now_unix),
                p.prefixes_received.to_string(),
                p.prefixes_accepted.to_string(),
                p.prefixes_advertised.to_string(),
            ];
            if wide {
                row.extend([
                    p.name.clone(),
                    p.local_as.to_string(),
                    p.remote_as.to_string(),
                ]);
            }
            t.push(row);
        }
        out.push_str(&t.render_boxed());
        out.push('\n');
    }
    out
}

// ===== helper functions =====

/// The peer's address, with the port when it is not BGP's 179.
fn address(p: &PeerStatus) -> String {
    match (p.port, p.address) {
        (179, a) => a.to_string(),
        (port, std::net::IpAddr::V6(a)) => format!("[{a}]:{port}"),
        (port, a) => format!("{a}:{port}"),
    }
}

/// BIRD's protocol state as calicoctl shows it: `up` once Established,
/// `start` while the FSM is still trying.
fn state_word(state: &str) -> &'static str {
    if state.eq_ignore_ascii_case("established") {
        "up"
    } else {
        "start"
    }
}

/// The RFC 4271 state, why it is held Idle, the last error and the BFD
/// state, in words.
fn info(p: &PeerStatus, now_unix: u64) -> String {
    let mut s = p.state.clone();
    if let Some(h) = &p.held_idle {
        let until = match h.restart_unix {
            Some(t) => {
                format!("restarts in {}s", t.saturating_sub(now_unix))
            }
            None => "until `margayctl node reset`".to_string(),
        };
        s.push_str(&format!(" (held: {}; {until})", h.reason));
    }
    if let Some(err) = p.last_error.as_deref().filter(|e| !e.is_empty()) {
        s.push(' ');
        s.push_str(err);
    }
    if let Some(bfd) = &p.bfd_state {
        s.push_str(&format!(", BFD {bfd}"));
    }
    s
}

/// When the state last changed: the UTC time of day within the last 24
/// hours (as BIRD prints it), else the UTC date.
pub fn since(since_unix: u64, now_unix: u64) -> String {
    let Ok(secs) = i64::try_from(since_unix) else {
        return "-".into();
    };
    let Ok(ts) = jiff::Timestamp::from_second(secs) else {
        return "-".into();
    };
    let dt = ts.to_zoned(jiff::tz::TimeZone::UTC);
    if since_unix == 0 {
        "-".into()
    } else if now_unix.saturating_sub(since_unix) < 86_400 {
        dt.strftime("%H:%M:%S").to_string()
    } else {
        dt.strftime("%Y-%m-%d").to_string()
    }
}

#[cfg(test)]
mod tests {
    use margay_ctlproto::PeerType;

    use super::*;

    fn peer(addr: &str, ty: PeerType, state: &str) -> PeerStatus {
        PeerStatus {
            name: format!("Mesh_{addr}"),
            peer_type: ty,
            address: addr.parse().unwrap(),
            port: 179,
            local_as: 64512,
            remote_as: 64512,
            state: state.into(),
            since_unix: 1_700_000_000,
            prefixes_received: 2,
            prefixes_accepted: 1,
            prefixes_advertised: 3,
            last_error: None,
            bfd_state: None,
            held_idle: None,
        }
    }

    #[test]
    fn renders_calicoctl_like_tables_per_family() {
        let mut down = peer("192.0.2.3", PeerType::NodeSpecific, "Active");
        down.last_error = Some("Socket: Connection refused".into());
        down.port = 1179;
        let peers =
            vec![down, peer("192.0.2.2", PeerType::Mesh, "Established")];
        let text = render(&peers, false, 1_700_000_060);
        let want = "\
IPv4 BGP status
+----------------+-------------------+-------+----------+-----------------------------------+----------+----------+------------+
|  PEER ADDRESS  |     PEER TYPE     | STATE |  SINCE   |               INFO                | RECEIVED | ACCEPTED | ADVERTISED |
+----------------+-------------------+-------+----------+-----------------------------------+----------+----------+------------+
| 192.0.2.2      | node-to-node mesh | up    | 22:13:20 | Established                       | 2        | 1        | 3          |
| 192.0.2.3:1179 | node specific     | start | 22:13:20 | Active Socket: Connection refused | 2        | 1        | 3          |
+----------------+-------------------+-------+----------+-----------------------------------+----------+----------+------------+

IPv6 BGP status
No IPv6 peers found.

";
        assert_eq!(text, want);
    }

    #[test]
    fn wide_adds_name_and_as_numbers_and_v6_ports_are_bracketed() {
        let mut p = peer("fd00::2", PeerType::RouteReflectorClient, "Idle");
        p.port = 1790;
        p.bfd_state = Some("down".into());
        let text = render(&[p], true, 1_700_000_000);
        assert!(text.contains("No IPv4 peers found."), "{text}");
        assert!(text.contains("| [fd00::2]:1790 |"), "{text}");
        assert!(text.contains("route reflector client"), "{text}");
        assert!(text.contains("Idle, BFD down"), "{text}");
        assert!(text.contains("| Mesh_fd00::2 | 64512    | 64512     |"));
    }

    #[test]
    fn held_idle_sessions_say_why_and_until_when() {
        let mut p = peer("192.0.2.4", PeerType::Global, "Idle");
        p.last_error = Some("sent Cease: Maximum Number of Prefixes".into());
        p.held_idle = Some(margay_ctlproto::HeldIdle {
            reason: "maximum prefixes exceeded (3 > 2)".into(),
            restart_unix: Some(1_700_000_090),
        });
        let text = render(&[p.clone()], false, 1_700_000_060);
        assert!(
            text.contains(
                "Idle (held: maximum prefixes exceeded (3 > 2); restarts in \
                 30s) sent Cease"
            ),
            "{text}"
        );
        p.held_idle.as_mut().unwrap().restart_unix = None;
        let text = render(&[p], false, 1_700_000_060);
        assert!(text.contains("until `margayctl node reset`"), "{text}");
    }

    #[test]
    fn since_is_time_of_day_then_date() {
        assert_eq!(since(1_700_000_000, 1_700_000_100), "22:13:20");
        assert_eq!(
            since(1_700_000_000, 1_700_000_000 + 2 * 86_400),
            "2023-11-14"
        );
        assert_eq!(since(0, 5), "-");
    }
}
