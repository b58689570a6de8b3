//! The process entry of both binaries: environment and stdin in, one JSON
//! document (result or error) on stdout, exit status 0 or 1 (the Go
//! skel's contract, pkg/skel/skel.go `PluginMainFuncs`). Logs go to
//! stderr or `log_file_path`, never to stdout.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::agent::Reply;
use crate::agent::client::{self, Relay};
use crate::config::{self, IpamConf, LogLevel, NetConf, Strictness};
use crate::delegate::Delegate;
use crate::error::{CniError, Code, Result};
use crate::ipam::{DatastoreCache, IpamBackend, MargayIpam};
use crate::ipam_plugin;
use crate::plugin;
use crate::spec::{Command, Env};
use crate::version::{self, Version};
use crate::veth::Removal;

/// Which binary is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `margay`: the main plugin.
    Main,
    /// `margay-ipam`: a delegated IPAM plugin.
    Ipam,
}

/// Runs one invocation and returns the exit status.
pub fn main_entry(role: Role) -> i32 {
    let start = Instant::now();
    let mut stdin = Vec::new();
    let (status, text) = match invoke(role, &mut stdin, start) {
        Invocation::Done(outcome) => render(outcome, &stdin),
        Invocation::Relayed(reply) => (reply.exit, reply.stdout),
    };
    tracing::debug!(took = ?start.elapsed(), "finished");
    if !text.is_empty() {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
    status
}

/// The exit status and stdout text of an outcome: the result, or the
/// error document in the config's cniVersion (the latest when the config
/// has none that is valid).
pub fn render(outcome: Result<String>, stdin: &[u8]) -> (i32, String) {
    match outcome {
        Ok(text) => (0, text),
        Err(e) => {
            tracing::error!(error = %e, "failed");
            let version = config::peek_version(stdin)
                .filter(|v| v.parse::<Version>().is_ok())
                .unwrap_or_else(|| Version::LATEST.as_str().to_string());
            (1, e.to_json(&version))
        }
    }
}

/// How an invocation ended in the plugin process.
enum Invocation {
    /// Handled here.
    Done(Result<String>),
    /// Handled by the node agent.
    Relayed(Reply),
}

/// A parsed invocation, or VERSION's answer.
enum Parsed {
    Version(String),
    Call(Box<NetConf>),
}

/// Everything up to the output.
fn invoke(role: Role, stdin: &mut Vec<u8>, start: Instant) -> Invocation {
    // stdin first, so that even an environment error is reported in the
    // config's cniVersion.
    let read = std::io::stdin().read_to_end(stdin);
    let parsed = Env::from_process().and_then(|env| {
        read.map_err(|e| {
            CniError::new(Code::Io, format!("reading stdin: {e}"))
        })?;
        Ok((parse_call(role, &env, stdin)?, env))
    });
    let (conf, env) = match parsed {
        Ok((Parsed::Call(conf), env)) => (conf, env),
        Ok((Parsed::Version(text), _)) => return Invocation::Done(Ok(text)),
        Err(e) => return Invocation::Done(Err(e)),
    };
    init_logging(&conf);
    tracing::debug!(command = %env.command, container = ?env.container_id,
        since_start = ?start.elapsed(), "invoked");
    if role == Role::Main
        && let Some(socket) = &conf.agent_socket
    {
        match client::relay(
            socket,
            client::process_env(),
            stdin,
            env.netns.as_deref(),
        ) {
            Relay::Reply(reply) => {
                tracing::debug!(exit = reply.exit, "relayed to the node agent");
                return Invocation::Relayed(reply);
            }
            Relay::NotTaken(e) => {
                tracing::debug!(error = %e, socket = %socket.display(),
                    "the node agent is not serving; doing the work here");
            }
            // The agent may have allocated: a second ADD here could take
            // another address. The runtime DELs and retries on an error.
            Relay::Lost(e) if env.command == Command::Add => {
                return Invocation::Done(Err(CniError::new(
                    Code::TryAgainLater,
                    format!(
                        "the node agent at {} did not answer: {e}",
                        socket.display()
                    ),
                )));
            }
            // The other verbs are idempotent: doing them again is safe.
            Relay::Lost(e) => {
                tracing::warn!(error = %e, socket = %socket.display(),
                    "the node agent did not answer; doing the work here");
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Invocation::Done(Err(CniError::new(
                Code::Io,
                format!("starting the runtime: {e}"),
            )));
        }
    };
    let outcome = rt.block_on(execute(role, &env, &conf, stdin, None));
    // The process exits as soon as the answer is printed, which releases
    // everything: shutting the runtime down first (cancelling the etcd
    // client's background tasks, closing its connection) would only
    // delay the answer.
    std::mem::forget(rt);
    Invocation::Done(outcome)
}

/// The config of an invocation, checked against its command.
fn parse_call(role: Role, env: &Env, stdin: &[u8]) -> Result<Parsed> {
    if env.command == Command::Version {
        return Ok(Parsed::Version(version::version_json(
            &config::peek_version(stdin).unwrap_or_default(),
        )));
    }
    let strictness = match role {
        Role::Main => Strictness::Strict,
        Role::Ipam => Strictness::IpamOnly,
    };
    let conf = config::parse(stdin, strictness)?;
    check_verb_version(env.command, conf.cni_version)?;
    Ok(Parsed::Call(Box::new(conf)))
}

/// An invocation relayed to the node agent (variables looked up through
/// `var`, the namespace opened from `netns_handle`), run on the agent's
/// datastore connections.
pub async fn execute_relayed(
    var: impl Fn(&str) -> Option<String>,
    netns_handle: Option<PathBuf>,
    stdin: &[u8],
    datastores: &DatastoreCache,
) -> Result<String> {
    let mut env = Env::from_lookup(var)?;
    // The path is the runtime's, in the host's mount and PID namespaces:
    // in the agent's container it may name nothing, or another namespace
    // (cri-dockerd's /proc/PID/ns/net, PID taken in the agent's own PID
    // namespace, could be the host's). Only the plugin's handle is used.
    if env.netns.is_some() && netns_handle.is_none() {
        return Err(CniError::env(
            "CNI_NETNS",
            "relayed without a handle of the namespace: the agent does not \
             open runtime paths itself",
        ));
    }
    env.netns_handle = netns_handle;
    match parse_call(Role::Main, &env, stdin)? {
        Parsed::Version(text) => Ok(text),
        Parsed::Call(conf) => {
            execute(Role::Main, &env, &conf, stdin, Some(datastores)).await
        }
    }
}

/// Runs a parsed invocation, connecting to the datastore or taking the
/// connection from `datastores`.
async fn execute(
    role: Role,
    env: &Env,
    conf: &NetConf,
    stdin: &[u8],
    datastores: Option<&DatastoreCache>,
) -> Result<String> {
    for warning in &conf.warnings {
        tracing::warn!("{warning}");
    }
    // Only the agent outlives the invocation, to delete a link later.
    let removal = if datastores.is_some() {
        Removal::Defer
    } else {
        Removal::Wait
    };
    match &conf.ipam {
        IpamConf::Margay(ic) => {
            let ipam = match datastores {
                Some(kept) => kept.ipam(conf, ic).await?,
                None => MargayIpam::connect(conf, ic).await?,
            };
            dispatch(role, env, conf, &ipam, removal).await
        }
        IpamConf::Delegated { plugin } => {
            let ipam = Delegate::find(plugin, env, stdin)?;
            dispatch(role, env, conf, &ipam, removal).await
        }
    }
}

/// CHECK exists from 0.4.0, GC and STATUS from 1.1.0; the skel refuses
/// them for older configs with code 1.
fn check_verb_version(cmd: Command, v: Version) -> Result<()> {
    let ok = match cmd {
        Command::Check => v.has_check(),
        Command::Gc | Command::Status => v.has_gc_and_status(),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    Err(CniError::new(
        Code::IncompatibleVersion,
        format!("cniVersion {v} does not have the {cmd} command"),
    ))
}

async fn dispatch<I: IpamBackend>(
    role: Role,
    env: &Env,
    conf: &NetConf,
    ipam: &I,
    removal: Removal,
) -> Result<String> {
    match (role, env.command) {
        (_, Command::Version) => {
            Ok(version::version_json(conf.cni_version.as_str()))
        }
        (_, Command::Status) => plugin::status(ipam).await,
        (role, Command::Gc) => plugin::gc(conf, ipam, role == Role::Main).await,
        (Role::Main, Command::Add) => plugin::add(env, conf, ipam).await,
        (Role::Main, Command::Del) => {
            plugin::del(env, conf, ipam, removal).await
        }
        (Role::Main, Command::Check) => plugin::check(env, conf, ipam).await,
        (Role::Ipam, Command::Add) => ipam_plugin::add(env, conf, ipam).await,
        (Role::Ipam, Command::Del) => ipam_plugin::del(env, conf, ipam).await,
        (Role::Ipam, Command::Check) => {
            ipam_plugin::check(env, conf, ipam).await
        }
    }
}

/// tracing to `log_file_path` (appending) or stderr at `log_level`.
fn init_logging(conf: &NetConf) {
    let level = match conf.log_level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::None => LevelFilter::OFF,
    };
    // At debug level every instrumented step (datastore requests, IPAM
    // phases, netlink work) logs its duration when it closes: the
    // profile of one invocation.
    let spans = if level >= LevelFilter::DEBUG {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    // Only margay's own crates log below warn: at debug, the gRPC and
    // HTTP/2 crates would drown the profile in frame logs. A static
    // target list, not an EnvFilter: nothing to parse or compile at the
    // start of every invocation.
    let filter = Targets::new()
        .with_default(level.min(LevelFilter::WARN))
        .with_targets(
            ["margay_cni", "margay_ipam", "margay_datastore"]
                .map(|t| (t, level)),
        );
    let layer = tracing_subscriber::fmt::layer()
        .with_span_events(spans)
        .with_ansi(false)
        .with_target(false);
    let file = conf.log_file_path.as_ref().and_then(|p| {
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        OpenOptions::new().create(true).append(true).open(p).ok()
    });
    let registry = tracing_subscriber::registry();
    // A second init (tests in one process) is harmless: keep the first.
    let _ = match file {
        Some(f) => registry
            .with(layer.with_writer(Mutex::new(f)).with_filter(filter))
            .try_init(),
        None => registry
            .with(layer.with_writer(std::io::stderr).with_filter(filter))
            .try_init(),
    };
}
