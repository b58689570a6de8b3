//! The process entry of both binaries: environment and stdin in, one JSON
//! document (result or error) on stdout, exit status 0 or 1 (the Go
//! skel's contract, pkg/skel/skel.go `PluginMainFuncs`). Logs go to
//! stderr or `log_file_path`, never to stdout.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::Instant;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{self, IpamConf, LogLevel, NetConf, Strictness};
use crate::delegate::Delegate;
use crate::error::{CniError, Code, Result};
use crate::ipam::{IpamBackend, MargayIpam};
use crate::ipam_plugin;
use crate::plugin;
use crate::spec::{Command, Env};
use crate::version::{self, Version};

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
    let outcome = invoke(role, &mut stdin, start);
    tracing::debug!(took = ?start.elapsed(), "finished");
    let version = config::peek_version(&stdin)
        .filter(|v| v.parse::<Version>().is_ok())
        .unwrap_or_else(|| Version::LATEST.as_str().to_string());
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(text) => {
            if !text.is_empty() {
                let _ = writeln!(out, "{text}");
            }
            0
        }
        Err(e) => {
            tracing::error!(error = %e, "failed");
            let _ = writeln!(out, "{}", e.to_json(&version));
            1
        }
    }
}

/// Everything up to the output.
fn invoke(role: Role, stdin: &mut Vec<u8>, start: Instant) -> Result<String> {
    // stdin first, so that even an environment error is reported in the
    // config's cniVersion.
    let read = std::io::stdin().read_to_end(stdin);
    let env = Env::from_process()?;
    read.map_err(|e| CniError::new(Code::Io, format!("reading stdin: {e}")))?;
    if env.command == Command::Version {
        return Ok(version::version_json(
            &config::peek_version(stdin).unwrap_or_default(),
        ));
    }
    let strictness = match role {
        Role::Main => Strictness::Strict,
        Role::Ipam => Strictness::IpamOnly,
    };
    let conf = config::parse(stdin, strictness)?;
    init_logging(&conf);
    check_verb_version(env.command, conf.cni_version)?;
    tracing::debug!(command = %env.command, container = ?env.container_id,
        since_start = ?start.elapsed(), "invoked");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CniError::new(Code::Io, format!("starting the runtime: {e}"))
        })?;
    let outcome = rt.block_on(async {
        match &conf.ipam {
            IpamConf::Margay(ic) => {
                let ipam = MargayIpam::connect(&conf, ic).await?;
                dispatch(role, &env, &conf, &ipam).await
            }
            IpamConf::Delegated { plugin } => {
                let ipam = Delegate::find(plugin, &env, stdin)?;
                dispatch(role, &env, &conf, &ipam).await
            }
        }
    });
    // The process exits as soon as the answer is printed, which releases
    // everything: shutting the runtime down first (cancelling the etcd
    // client's background tasks, closing its connection) would only
    // delay the answer.
    std::mem::forget(rt);
    outcome
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
) -> Result<String> {
    match (role, env.command) {
        (_, Command::Version) => {
            Ok(version::version_json(conf.cni_version.as_str()))
        }
        (_, Command::Status) => plugin::status(ipam).await,
        (_, Command::Gc) => plugin::gc(conf, ipam).await,
        (Role::Main, Command::Add) => plugin::add(env, conf, ipam).await,
        (Role::Main, Command::Del) => plugin::del(env, conf, ipam).await,
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
