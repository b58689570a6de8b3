#!/usr/bin/env python3
"""Regenerates tests/vectors/gobgp/*.hex: messages sent by GoBGP (gobgpd 3.x,
an independent encoder) to a scripted peer on loopback.

Usage: python3 capture_gobgp.py OUTDIR
It starts gobgpd on free loopback ports (no listening BGP port), lets it
connect to this script, completes the OPEN exchange, injects routes with the
`gobgp` CLI, withdraws them and asks for an administrative
shutdown with an RFC 9003 message (NOTIFICATION), and writes every message
GoBGP sent as hex with a comment line saying where it came from.
"""
import os, socket, struct, subprocess, sys, tempfile, threading, time

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

bgp_port, api_port = free_port(), free_port()
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", bgp_port)); ls.listen(1)

tmp = tempfile.mkdtemp(prefix="gobgp-vec-")
conf = os.path.join(tmp, "gobgpd.toml")
open(conf, "w").write(f"""
[global.config]
  as = 65001
  router-id = "192.0.2.1"
  port = -1
[[neighbors]]
  [neighbors.config]
    neighbor-address = "127.0.0.1"
    peer-as = 4200000001
  [neighbors.transport.config]
    remote-port = {bgp_port}
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 90
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
""")
gobgpd = subprocess.Popen(["gobgpd", "-f", conf, "--api-hosts", f"127.0.0.1:{api_port}",
                           "--pprof-disable", "--disable-stdlog"])
def cli(*a):
    subprocess.run(["gobgp", "-p", str(api_port), *a], check=True)

msgs = []
try:
    ls.settimeout(30)
    conn, _ = ls.accept()
    conn.settimeout(0.5)
    buf = b""
    def pump(seconds):
        global buf
        end = time.time() + seconds
        while time.time() < end:
            try:
                d = conn.recv(65536)
                if not d:
                    return
                buf += d
            except socket.timeout:
                pass
            while len(buf) >= 19:
                l = struct.unpack("!H", buf[16:18])[0]
                if len(buf) < l:
                    break
                msgs.append(buf[:l]); buf = buf[l:]
    # Our OPEN: AS_TRANS, hold 90, id 192.0.2.2, caps: MP v4/v6 unicast,
    # route refresh, 4-octet AS 4200000001, graceful restart (120 s).
    caps = (bytes([1, 4, 0, 1, 0, 1]) + bytes([1, 4, 0, 2, 0, 1]) + bytes([2, 0])
            + bytes([65, 4]) + struct.pack("!I", 4200000001)
            + bytes([64, 10]) + struct.pack("!H", 120) + bytes([0, 1, 1, 0, 0, 2, 1, 0]))
    params = bytes([2, len(caps)]) + caps
    body = bytes([4]) + struct.pack("!HH", 23456, 90) + socket.inet_aton("192.0.2.2") + bytes([len(params)]) + params
    conn.sendall(b"\xff" * 16 + struct.pack("!HB", 19 + len(body), 1) + body)
    conn.sendall(b"\xff" * 16 + struct.pack("!HB", 19, 4))
    pump(3)
    cli("global", "rib", "-a", "ipv4", "add", "10.1.0.0/24", "origin", "igp", "med", "10",
        "community", "65000:1,no-export", "large-community", "65001:2:3")
    cli("global", "rib", "-a", "ipv4", "add", "10.2.0.0/16", "origin", "incomplete",
        "aggregator", "4200000002:192.0.2.9")
    cli("global", "rib", "-a", "ipv6", "add", "2001:db8:1::/48", "nexthop", "2001:db8::1")
    pump(3)
    cli("global", "rib", "-a", "ipv4", "del", "10.1.0.0/24")
    cli("global", "rib", "-a", "ipv6", "del", "2001:db8:1::/48")
    pump(3)
    cli("neighbor", "127.0.0.1", "shutdown", "--reason", "maintenance window")
    pump(3)
finally:
    gobgpd.terminate(); gobgpd.wait()

names = {1: "open", 2: "update", 3: "notification", 4: "keepalive", 5: "refresh"}
count = {}
for m in msgs:
    t = names.get(m[18], "type%d" % m[18])
    count[t] = count.get(t, 0) + 1
    if t == "keepalive" and count[t] > 1:
        continue
    fn = os.path.join(OUT, f"{t}_{count[t]}.hex")
    with open(fn, "w") as f:
        f.write(f"# {t} #{count[t]} sent by GoBGP gobgpd (Debian package, v3.x) to a scripted\n")
        f.write("# peer on loopback; regenerate with tests/vectors/capture_gobgp.py.\n")
        for i in range(0, len(m), 32):
            f.write(m[i:i + 32].hex() + "\n")
    print("wrote", fn, len(m))
