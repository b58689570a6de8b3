//! `cni-bench first-packet [ROUNDS]`: the time from the start of a pod's
//! ADD on node1 of a live lab until a pod on node2 gets the first ICMP
//! echo reply from it, for a pod whose block node1 already holds and for
//! one that needs a new block (from the lab's Manual pool of 4-address
//! blocks, filled up between samples so that each sample claims a block).
//! The echo requests go out every 0.5 ms from a raw socket in node2's pod
//! as soon as ADD has returned the address (the earliest a peer could
//! know it).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
    recv, sendto, setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;
use serde_json::Value;

use crate::lab::{Lab, enter_netns};
use crate::live::STATE_DIR;
use crate::{Namespaces, invoke_output, pct};

/// Addresses in a block of the lab's small-blocks pool (/30).
const SMALL_BLOCK: usize = 4;
const SMALL_POOL: &str = "small-blocks";

pub fn main(rounds: usize) -> anyhow::Result<()> {
    // The small pool has 64 blocks; the node's first claim is sample 0.
    let rounds = rounds.min(60 / SMALL_BLOCK);
    println!("load before: {}", crate::loadavg());
    let lab = Lab::up(Path::new(STATE_DIR), 2, 1)?;
    let node1 = lab.node("node1")?["netns"].as_str().context("netns")?;
    let pinger = lab.pod_on("node2")?["netns"].as_str().context("netns")?;
    let conf = lab.cni_config("node1")?;
    let sock = std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(pinger)?;
            let fd = socket(
                AddressFamily::Inet,
                SockType::Raw,
                SockFlag::empty(),
                SockProtocol::Icmp,
            )?;
            setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 500))?;
            anyhow::Ok(fd)
        })
        .join()
        .expect("no panic")
    })?;
    let (existing, new) = std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(node1)?;
            bench(rounds, &conf, &sock)
        })
        .join()
        .expect("no panic")
    })?;
    println!("load after: {}", crate::loadavg());
    for (label, mut v) in [("existing block", existing), ("new block", new)] {
        let each: Vec<String> = v
            .iter()
            .map(|(a, t)| {
                format!(
                    "{:.1}/{:.1}",
                    a.as_secs_f64() * 1e3,
                    t.as_secs_f64() * 1e3
                )
            })
            .collect();
        println!("{label}, ADD/first reply (ms) in order: {}", each.join(" "));
        let mut add: Vec<Duration> = v.iter().map(|s| s.0).collect();
        let mut total: Vec<Duration> = v.iter_mut().map(|s| s.1).collect();
        println!(
            "{label:<16} first reply p50 {:>7.2}ms p99 {:>7.2}ms; of which ADD p50 {:>7.2}ms ({} samples)",
            pct(&mut total, 0.5),
            pct(&mut total, 0.99),
            pct(&mut add, 0.5),
            total.len()
        );
    }
    drop(lab);
    Ok(())
}

/// (ADD, first reply) durations from the start of ADD, per sample.
type Sample = (Duration, Duration);

fn bench(
    rounds: usize,
    conf: &Value,
    sock: &OwnedFd,
) -> anyhow::Result<(Vec<Sample>, Vec<Sample>)> {
    let margay = crate::plugin()?;
    let nss = Namespaces::create("mglab-fp", rounds * (1 + SMALL_BLOCK))?;
    let mut free = nss.0.iter();
    let mut existing = Vec::new();
    for r in 0..rounds {
        let ns = free.next().expect("enough namespaces");
        let id = format!("fp-e{r}");
        let start = Instant::now();
        let (took, ip) = add(&margay, &id, ns, conf)?;
        let reply = first_reply(sock, ip, start)?;
        existing.push((took, reply));
        invoke_output(&margay, "DEL", &id, ns, conf)?;
    }
    let mut small = conf.clone();
    small["ipam"]["ipv4_pools"] = serde_json::json!([SMALL_POOL]);
    let mut new = Vec::new();
    let mut blocks = Vec::new();
    for r in 0..rounds {
        let ns = free.next().expect("enough namespaces");
        let id = format!("fp-n{r}");
        let start = Instant::now();
        let (took, ip) = add(&margay, &id, ns, &small)?;
        let reply = first_reply(sock, ip, start)?;
        let block = u32::from(ip) & !(SMALL_BLOCK as u32 - 1);
        if blocks.contains(&block) {
            bail!("sample {r}: {ip} is in a block node1 already held");
        }
        blocks.push(block);
        new.push((took, reply));
        // Fill the block, so that the next sample needs a new one.
        for f in 1..SMALL_BLOCK {
            let ns = free.next().expect("enough namespaces");
            let (_, fill) = add(&margay, &format!("fp-n{r}-{f}"), ns, &small)?;
            if u32::from(fill) & !(SMALL_BLOCK as u32 - 1) != block {
                bail!("filler {fill} is not in {ip}'s block");
            }
        }
    }
    Ok((existing, new))
}

/// Runs ADD; returns its duration and the pod's IPv4 address.
fn add(
    plugin: &Path,
    id: &str,
    ns: &str,
    conf: &Value,
) -> anyhow::Result<(Duration, Ipv4Addr)> {
    let (took, stdout) = invoke_output(plugin, "ADD", id, ns, conf)?;
    let result: Value = serde_json::from_str(&stdout)?;
    let ip = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("no IPv4 address in {stdout}"))?;
    Ok((took, ip))
}

/// Sends echo requests to `ip` every 0.5 ms until one is answered;
/// returns the time from `start` to the reply.
fn first_reply(
    sock: &OwnedFd,
    ip: Ipv4Addr,
    start: Instant,
) -> anyhow::Result<Duration> {
    let to = SockaddrIn::from(SocketAddrV4::new(ip, 0));
    let id = (std::process::id() & 0xffff) as u16;
    let mut buf = [0u8; 1500];
    for seq in 0u16.. {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("no echo reply from {ip} within 10 s");
        }
        sendto(sock.as_raw_fd(), &echo(id, seq), &to, MsgFlags::empty())?;
        let sent = Instant::now();
        while sent.elapsed() < Duration::from_micros(500) {
            let n = match recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => return Err(e.into()),
            };
            if is_reply(&buf[..n], ip, id) {
                return Ok(start.elapsed());
            }
        }
    }
    unreachable!("the loop returns")
}

/// An ICMP echo request (RFC 792) with its checksum.
fn echo(id: u16, seq: u16) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = 8;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    let mut sum: u32 = p
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p
}

/// An echo reply from `ip` with our id (a raw socket gets the IP header).
fn is_reply(pkt: &[u8], ip: Ipv4Addr, id: u16) -> bool {
    let Some(&first) = pkt.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    pkt.len() >= ihl + 8
        && pkt[12..16] == ip.octets()
        && pkt[ihl] == 0
        && pkt[ihl + 4..ihl + 6] == id.to_be_bytes()
}
