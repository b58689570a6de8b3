//! Throwaway network namespaces ("nodes"), veth links and L2 segments.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Runs `ip` (or any command) and returns stdout, or an error carrying the
/// command line and its stderr.
pub(crate) fn run<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
) -> io::Result<String> {
    let out = Command::new(program).args(args).output()?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let line: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    Err(io::Error::other(format!(
        "`{program} {}` failed ({}): {}",
        line.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// A network namespace that is deleted, with every process inside it, on
/// `Drop`.
pub struct Netns {
    name: String,
    logs: tempfile::TempDir,
    children: Mutex<Vec<Child>>,
}

impl Netns {
    /// Creates `mg-<prefix>-<pid>-<n>` with its loopback up.
    pub fn new(prefix: &str) -> io::Result<Netns> {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("mg-{prefix}-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Netns {
            name,
            logs: tempfile::Builder::new().prefix("margay-netns-").tempdir()?,
            children: Mutex::new(Vec::new()),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file, as a CNI runtime passes it.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs a command inside the namespace and returns its stdout.
    pub fn exec<S: AsRef<OsStr>>(&self, argv: &[S]) -> io::Result<String> {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("netns"),
            OsStr::new("exec"),
            OsStr::new(&self.name),
        ];
        args.extend(argv.iter().map(|a| a.as_ref()));
        run("ip", &args)
    }

    /// Starts `cmd` inside the namespace (program, args, env and cwd are
    /// taken from it; stdout and stderr go to a log file, see [`Netns::log`]).
    /// The process is killed when the namespace is dropped.
    pub fn spawn(&self, cmd: Command) -> io::Result<u32> {
        let mut wrapped = Command::new("ip");
        wrapped.args(["netns", "exec", &self.name]);
        wrapped.arg(cmd.get_program()).args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        // Reserve a log name before we know the pid, then rename.
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let tmp = self.logs.path().join(format!("spawn-{n}.log"));
        let log = File::create(&tmp)?;
        wrapped
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = wrapped.spawn()?;
        let pid = child.id();
        std::fs::rename(&tmp, self.log_path(pid))?;
        self.children.lock().expect("children lock").push(child);
        Ok(pid)
    }

    fn log_path(&self, pid: u32) -> PathBuf {
        self.logs.path().join(format!("{pid}.log"))
    }

    /// What a spawned process wrote so far (stdout and stderr together).
    pub fn log(&self, pid: u32) -> String {
        std::fs::read_to_string(self.log_path(pid)).unwrap_or_default()
    }

    /// Kills one spawned process with SIGKILL and reaps it.
    pub fn kill(&self, pid: u32) {
        let mut children = self.children.lock().expect("children lock");
        if let Some(pos) = children.iter().position(|c| c.id() == pid) {
            let mut child = children.remove(pos);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether a spawned process is still running.
    pub fn is_running(&self, pid: u32) -> bool {
        let mut children = self.children.lock().expect("children lock");
        children
            .iter_mut()
            .find(|c| c.id() == pid)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let children = std::mem::take(
            &mut *self.children.lock().unwrap_or_else(|e| e.into_inner()),
        );
        for mut child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Anything else still running in the namespace (daemons that forked).
        if let Ok(pids) = run("ip", &["netns", "pids", &self.name]) {
            for pid in pids.split_whitespace() {
                let _ = run("kill", &["-9", pid]);
            }
        }
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Creates a veth pair with `a_if` in `a` and `b_if` in `b`, both up, each
/// with an address when its cidr is not empty ("10.0.0.1/24").
pub fn veth_between(
    a: &Netns,
    a_if: &str,
    a_cidr: &str,
    b: &Netns,
    b_if: &str,
    b_cidr: &str,
) -> io::Result<()> {
    // Both ends are created directly inside their namespaces, so nothing
    // ever appears (or clashes) in the host namespace.
    run(
        "ip",
        &[
            "link",
            "add",
            a_if,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            b.name(),
        ],
    )?;
    for (ns, ifname, cidr) in [(a, a_if, a_cidr), (b, b_if, b_cidr)] {
        if !cidr.is_empty() {
            ns.exec(&["ip", "addr", "add", cidr, "dev", ifname])?;
        }
        ns.exec(&["ip", "link", "set", ifname, "up"])?;
    }
    Ok(())
}

/// A shared L2 segment: a bridge inside its own hub namespace, to which
/// node namespaces attach with veth links.
pub struct Segment {
    hub: Netns,
    ports: AtomicU32,
}

impl Segment {
    pub fn new(prefix: &str) -> io::Result<Segment> {
        let hub = Netns::new(prefix)?;
        hub.exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        hub.exec(&["ip", "link", "set", "br0", "up"])?;
        Ok(Segment {
            hub,
            ports: AtomicU32::new(0),
        })
    }

    /// The namespace that holds the bridge (e.g. to run tcpdump on br0).
    pub fn hub(&self) -> &Netns {
        &self.hub
    }

    /// Connects `node` to the segment through `ifname` with address `cidr`
    /// ("" for none).
    pub fn attach(
        &self,
        node: &Netns,
        ifname: &str,
        cidr: &str,
    ) -> io::Result<()> {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        veth_between(&self.hub, &port, "", node, ifname, cidr)?;
        self.hub
            .exec(&["ip", "link", "set", &port, "master", "br0"])?;
        Ok(())
    }
}
