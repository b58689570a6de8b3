//! The proofs: reachability (ICMP and TCP) from inside pod namespaces, FIB
//! and ToR contents, and the absence of tunnel devices.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use serde_json::Value;

/// Runs `f` on a fresh thread that has joined network namespace `netns`;
/// sockets it creates belong to that namespace for their whole life.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || -> io::Result<T> {
        let file = File::open(&path)?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(io::Error::from)?;
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("probe thread panicked"))?
}

/// How long one ICMP echo or TCP exchange may take. Generous: a 50-node
/// lab runs some 150 daemons on two cores, where a reply can take well over
/// a second without anything being wrong with the fabric.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `argv` with its network namespace set to `netns` (the thread that
/// forks it has joined the namespace), without `ip netns exec`'s mount
/// namespace and sysfs remount: thousands of probes stay cheap.
fn run_in_netns(netns: &str, argv: &[String]) -> Result<(), String> {
    let argv = argv.to_vec();
    let out = in_netns(netns, move || {
        Command::new(&argv[0]).args(&argv[1..]).output()
    })
    .and_then(|r| r)
    .map_err(|e| format!("running in {netns}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // ping's summary line says what happened ("1 packets transmitted, 0
    // received"); stderr says why it could not send at all.
    let summary = text
        .lines()
        .find(|l| l.contains("transmitted"))
        .unwrap_or("")
        .trim();
    Err(format!(
        "{}: {} {summary}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )
    .trim()
    .to_string())
}

/// One ICMP echo from `src_ns` to `dst`, waiting up to [`PROBE_TIMEOUT`]
/// for the reply.
pub fn ping(src_ns: &str, dst: IpAddr) -> Result<(), String> {
    let wait = PROBE_TIMEOUT.as_secs().to_string();
    let argv: Vec<String> =
        ["ping", "-c1", "-W", &wait, "-n", &dst.to_string()]
            .map(str::to_string)
            .to_vec();
    run_in_netns(src_ns, &argv).map_err(|e| format!("ping {dst}: {e}"))
}

/// A TCP connection from `src_ns` to a listener opened in `dst_ns` on
/// `dst`, with a few bytes echoed back.
pub fn tcp(
    src_ns: &str,
    dst_ns: &str,
    dst: IpAddr,
    port: u16,
) -> Result<(), String> {
    let addr = SocketAddr::new(dst, port);
    tcp_via(src_ns, dst_ns, addr, addr)
}

/// A TCP connection from `src_ns` to `addr`, served by a listener opened
/// in `dst_ns` on `listen` (another address when something on the way
/// translates it, e.g. a Service address DNATed to a pod), with a few
/// bytes echoed back.
pub fn tcp_via(
    src_ns: &str,
    dst_ns: &str,
    listen: SocketAddr,
    addr: SocketAddr,
) -> Result<(), String> {
    let listener = in_netns(dst_ns, move || TcpListener::bind(listen))
        .and_then(|r| r)
        .map_err(|e| format!("listen on {listen} in {dst_ns}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let server = std::thread::spawn(move || -> io::Result<()> {
        // The client connects within PROBE_TIMEOUT or gives up.
        let deadline = Instant::now() + PROBE_TIMEOUT + Duration::from_secs(1);
        loop {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false)?;
                    s.set_read_timeout(Some(PROBE_TIMEOUT))?;
                    let mut buf = [0u8; 6];
                    s.read_exact(&mut buf)?;
                    return s.write_all(&buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(io::Error::other("no connection arrived"));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
    });
    let client = in_netns(src_ns, move || -> io::Result<()> {
        let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
        s.set_read_timeout(Some(PROBE_TIMEOUT))?;
        s.write_all(b"margay")?;
        let mut back = [0u8; 6];
        s.read_exact(&mut back)?;
        if &back != b"margay" {
            return Err(io::Error::other("echo mismatch"));
        }
        Ok(())
    })
    .and_then(|r| r);
    let served = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    client.map_err(|e| format!("connect to {addr}: {e}"))?;
    served.map_err(|e| format!("serve on {addr}: {e}"))
}

/// Tunnel device kinds that would mean encapsulation.
const TUNNEL_KINDS: [&str; 10] = [
    "ipip",
    "gre",
    "gretap",
    "vxlan",
    "geneve",
    "sit",
    "ip6tnl",
    "ip6gre",
    "wireguard",
    "ip6gretap",
];

/// Tunnel devices in a namespace (`ip -d -j link` output).
pub fn tunnel_devices(ip_link_json: &str) -> Vec<String> {
    let links: Vec<Value> =
        serde_json::from_str(ip_link_json).unwrap_or_default();
    links
        .iter()
        .filter_map(|l| {
            let kind = l["linkinfo"]["info_kind"].as_str()?;
            TUNNEL_KINDS.contains(&kind).then(|| {
                format!("{} ({kind})", l["ifname"].as_str().unwrap_or("?"))
            })
        })
        .collect()
}

/// For `dst` in an `ip -j route` dump: the gateways and devices of its
/// route (several when multipath), or None when there is no such route.
pub fn route_via(
    ip_route_json: &str,
    dst: &str,
) -> Option<Vec<(String, String)>> {
    let routes: Vec<Value> = serde_json::from_str(ip_route_json).ok()?;
    let r = routes.iter().find(|r| r["dst"].as_str() == Some(dst))?;
    let hop = |h: &Value| {
        (
            h["gateway"]
                .as_str()
                .unwrap_or(h["type"].as_str().unwrap_or(""))
                .to_string(),
            h["dev"].as_str().unwrap_or("").to_string(),
        )
    };
    match r["nexthops"].as_array() {
        Some(hops) => Some(hops.iter().map(hop).collect()),
        None => Some(vec![hop(r)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tunnels_and_routes_in_iproute_json() {
        let links = r#"[{"ifname":"lo"},{"ifname":"eth0","linkinfo":{"info_kind":"veth"}},
            {"ifname":"tunl0","linkinfo":{"info_kind":"ipip"}}]"#;
        assert_eq!(tunnel_devices(links), vec!["tunl0 (ipip)".to_string()]);
        let routes = r#"[{"dst":"10.244.1.0/26","gateway":"10.77.0.12","dev":"eth0","protocol":"81"},
            {"dst":"10.244.2.0/26","nexthops":[{"gateway":"10.77.0.13","dev":"eth0"},{"gateway":"10.77.0.14","dev":"eth0"}]}]"#;
        assert_eq!(
            route_via(routes, "10.244.1.0/26"),
            Some(vec![("10.77.0.12".into(), "eth0".into())])
        );
        assert_eq!(route_via(routes, "10.244.2.0/26").unwrap().len(), 2);
        assert_eq!(route_via(routes, "10.244.3.0/26"), None);
    }
}
