//! Running commands: synchronous helpers with errors that say what failed
//! and what to do.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::LabError;

/// Runs `program args` and returns its stdout.
pub fn run<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
) -> Result<String, LabError> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        LabError::Command {
            command: describe(program, args),
            detail: format!("cannot run {program}: {e}"),
        }
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(LabError::Command {
        command: describe(program, args),
        detail: format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
    })
}

/// Runs a command inside a network namespace.
pub fn ns_run<S: AsRef<OsStr>>(
    netns: &str,
    argv: &[S],
) -> Result<String, LabError> {
    let mut args: Vec<&OsStr> =
        vec![OsStr::new("netns"), OsStr::new("exec"), OsStr::new(netns)];
    args.extend(argv.iter().map(|a| a.as_ref()));
    run("ip", &args)
}

/// Starts a long-lived process (in `netns` when given) detached from this
/// one: its own process group, output to `log`. Returns its pid.
pub fn spawn_detached(
    netns: Option<&str>,
    program: &Path,
    args: &[String],
    log: &Path,
) -> Result<u32, LabError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args);
    let file = File::create(log).map_err(|e| LabError::Io {
        what: format!("creating log {}", log.display()),
        source: e,
    })?;
    let err = file.try_clone().map_err(|e| LabError::Io {
        what: "duplicating a log handle".into(),
        source: e,
    })?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::Command {
            command: format!("{} {}", program.display(), args.join(" ")),
            detail: e.to_string(),
        })?;
    Ok(child.id())
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn describe<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// Which of `programs` are missing from PATH.
pub fn missing_programs<'a>(programs: &[&'a str]) -> Vec<&'a str> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    programs
        .iter()
        .copied()
        .filter(|p| !std::env::split_paths(&paths).any(|d| d.join(p).is_file()))
        .collect()
}

/// `mkdir -p`, with an error naming the directory.
pub fn mkdir(path: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(path).map_err(|e| LabError::Io {
        what: format!("creating {}", path.display()),
        source: e,
    })
}
