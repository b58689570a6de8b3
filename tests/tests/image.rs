//! The node image (issue 13): `scripts/image` builds an OCI archive from
//! this build's binaries, offline, FROM scratch. Its layer must hold every
//! program the DaemonSet's command lines run (the containers' `command`,
//! and the commands of the install-cni `/bin/sh -c` script), the plugins
//! that script copies out of the image, and what margay-node and
//! felix-lite run themselves (bgpd, felix-lite, nft); each must start from
//! the unpacked root filesystem under chroot, with only the libraries the
//! image carries; the plugins, which run on the host, with none at all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Words of the shell tokens that stand in command position: the first
/// word of each simple command, also inside `$(...)`, without shell
/// keywords and builtins (they are not files in the image), assignments
/// and redirection targets. Enough for the install-cni script; a construct
/// it does not know makes the test name a word that is no program, which
/// fails loudly rather than passing.
fn command_words(script: &str) -> Vec<String> {
    const NOT_PROGRAMS: &[&str] = &[
        "set", "for", "in", "do", "done", "if", "then", "else", "elif", "fi",
        "echo", "umask", "cd", "export", "exit", "true", "false", "!", "while",
        "case", "esac", "test", "[",
    ];
    let script = script.replace("\\\n", " ");
    let mut out = Vec::new();
    let mut word = String::new();
    let mut at_cmd = true;
    let mut redirect = false;
    let mut in_for = false;
    let mut quote: Option<char> = None;
    // Quote context to restore at each `)` closing a `$(`.
    let mut stack: Vec<Option<char>> = Vec::new();
    let mut flush = |word: &mut String,
                     at_cmd: &mut bool,
                     redirect: &mut bool,
                     in_for: &mut bool| {
        if word.is_empty() {
            return;
        }
        let w = std::mem::take(word);
        if *redirect {
            *redirect = false;
        } else if *at_cmd && !*in_for {
            if w == "for" {
                *in_for = true;
                *at_cmd = false;
            } else if ["do", "then", "else", "!"].contains(&w.as_str())
                || (w.contains('=') && !w.starts_with('='))
            {
                // Still in command position.
            } else {
                out.push(w);
                *at_cmd = false;
            }
        }
    };
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') => quote = None,
            (Some('\''), _) => word.push(c),
            (Some('"'), '"') => quote = None,
            (_, '$') if chars.peek() == Some(&'(') => {
                chars.next();
                flush(&mut word, &mut at_cmd, &mut redirect, &mut in_for);
                stack.push(quote);
                quote = None;
                at_cmd = true;
                in_for = false;
            }
            (None, ')') if !stack.is_empty() => {
                flush(&mut word, &mut at_cmd, &mut redirect, &mut in_for);
                quote = stack.pop().flatten();
                at_cmd = false;
            }
            (Some('"'), _) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.push(c);
            }
            (None, '$') if chars.peek() == Some(&'{') => {
                word.push(c);
                for d in chars.by_ref() {
                    word.push(d);
                    if d == '}' {
                        break;
                    }
                }
            }
            (None, ';' | '|' | '&' | '\n' | '{' | '}' | '(' | ')') => {
                flush(&mut word, &mut at_cmd, &mut redirect, &mut in_for);
                at_cmd = true;
                in_for = false;
            }
            (None, '>' | '<') => {
                flush(&mut word, &mut at_cmd, &mut redirect, &mut in_for);
                redirect = true;
            }
            (None, c) if c.is_whitespace() => {
                flush(&mut word, &mut at_cmd, &mut redirect, &mut in_for);
            }
            (_, c) => word.push(c),
        }
    }
    flush(&mut word, &mut at_cmd, &mut redirect, &mut in_for);
    out.retain(|w| !NOT_PROGRAMS.contains(&w.as_str()));
    out
}

/// Paths under /usr/local/bin the script reads from the image, with
/// `for VAR in LIST` loops expanded (`cp /usr/local/bin/$b ...`).
fn image_paths(script: &str) -> Vec<String> {
    let mut loops: Vec<(String, Vec<String>)> = Vec::new();
    for line in script.lines() {
        let line = line.trim();
        if let Some((var, list)) =
            line.strip_prefix("for ").and_then(|r| r.split_once(" in "))
        {
            let list = list.split(';').next().unwrap_or_default();
            loops.push((
                var.trim().to_string(),
                list.split_whitespace().map(str::to_string).collect(),
            ));
        }
    }
    let mut out = Vec::new();
    for word in script.split_whitespace() {
        let Some(at) = word.find("/usr/local/bin/") else {
            continue;
        };
        let path = &word[at..];
        match loops.iter().find(|(v, _)| path.contains(&format!("${v}"))) {
            Some((v, items)) => out.extend(
                items.iter().map(|i| path.replace(&format!("${v}"), i)),
            ),
            None => out.push(path.to_string()),
        }
    }
    out
}

#[derive(Deserialize)]
struct Container {
    name: String,
    image: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
}

/// Every container margay's workloads run from the image: the
/// DaemonSet's (init containers first), then margay-controllers'
/// Deployment.
fn daemonset_containers() -> Vec<Container> {
    ["deploy/30-daemonset.yaml", "deploy/40-controllers.yaml"]
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(repo().join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            serde_yaml::Deserializer::from_str(&text)
                .map(|d| serde_yaml::Value::deserialize(d).unwrap())
                .filter(|o| {
                    matches!(
                        o["kind"].as_str(),
                        Some("DaemonSet" | "Deployment")
                    )
                })
                .flat_map(|o| {
                    let spec = &o["spec"]["template"]["spec"];
                    ["initContainers", "containers"]
                        .iter()
                        .flat_map(|k| {
                            spec[*k].as_sequence().cloned().unwrap_or_default()
                        })
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .map(|c| serde_yaml::from_value(c).expect("a container"))
        .collect()
}

#[test]
fn the_script_parser_finds_commands_not_words() {
    let script = "set -eu\nfor b in a b2; do\n  cp /usr/local/bin/$b \
                  /host/.$b.tmp\ndone\nkc=/x/y\n{\n  echo \"  {cluster: x}\"\n  \
                  echo \"data: $(base64 -w0 /ca.crt)\"\n} > \"$kc\"\nsed -e \
                  \"s/__N__/${N}/g\" \\\n  /etc/conf \\\n  > /tmp/out\n";
    assert_eq!(command_words(script), ["cp", "base64", "sed"]);
    assert_eq!(
        image_paths(script),
        ["/usr/local/bin/a", "/usr/local/bin/b2"]
    );
}

/// `tar -xf archive -C dir`.
fn untar(archive: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .status()
        .expect("tar");
    assert!(st.success(), "tar -xf {}", archive.display());
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob(layout: &Path, digest: &serde_json::Value) -> PathBuf {
    let d = digest.as_str().expect("a digest");
    layout
        .join("blobs/sha256")
        .join(d.strip_prefix("sha256:").expect("a sha256 digest"))
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
#[ignore = "needs root (chroot): scripts/test runs it as root"]
fn the_image_holds_and_starts_every_program_the_daemonset_runs() {
    margay_testkit::require_root("image");
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("margay-node.oci.tar");
    // The static plugins of this profile, which scripts/test builds
    // (scripts/plugins --debug) before it runs the tests.
    let bins = margay_tests::bin_dir();
    let plugin_dir = bins
        .parent()
        .expect("target dir")
        .join("plugins")
        .join(bins.file_name().expect("profile dir"));
    assert!(
        plugin_dir.join("margay").exists(),
        "{} has no static plugins: run scripts/plugins{} first (scripts/test does)",
        plugin_dir.display(),
        if cfg!(debug_assertions) {
            " --debug"
        } else {
            ""
        }
    );
    let out = Command::new(repo().join("scripts/image"))
        .arg("--bin-dir")
        .arg(&bins)
        .arg("--plugin-dir")
        .arg(&plugin_dir)
        .arg("--out")
        .arg(&archive)
        .output()
        .expect("scripts/image");
    assert!(
        out.status.success(),
        "scripts/image failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The layout: index -> manifest -> config and one layer, each blob
    // named by its digest.
    let layout = tmp.path().join("oci");
    untar(&archive, &layout);
    let index = json(&layout.join("index.json"));
    let desc = &index["manifests"][0];
    let manifest_path = blob(&layout, &desc["digest"]);
    let manifest = json(&manifest_path);
    let config = json(&blob(&layout, &manifest["config"]["digest"]));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let layer = blob(&layout, &layers[0]["digest"]);
    for (path, d) in [
        (&manifest_path, &desc["digest"]),
        (&layer, &layers[0]["digest"]),
    ] {
        assert_eq!(format!("sha256:{}", sha256(path)), d.as_str().unwrap());
    }
    assert_eq!(
        config["rootfs"]["diff_ids"][0], layers[0]["digest"],
        "an uncompressed layer's diff_id is its digest"
    );

    let containers = daemonset_containers();
    let image = &containers[0].image;
    assert!(containers.iter().all(|c| &c.image == image));
    assert_eq!(
        desc["annotations"]["io.containerd.image.name"],
        format!("docker.io/{image}"),
        "the archive loads under the name the DaemonSet runs"
    );

    let rootfs = tmp.path().join("rootfs");
    untar(&layer, &rootfs);
    let path_env = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str()?.strip_prefix("PATH="))
        .next()
        .expect("the config sets PATH")
        .to_string();
    // Where a name resolves in the image, as the runtime's PATH lookup
    // does; absolute names as they are.
    let resolve = |name: &str| -> Option<String> {
        let candidates: Vec<String> = if name.starts_with('/') {
            vec![name.to_string()]
        } else {
            path_env.split(':').map(|d| format!("{d}/{name}")).collect()
        };
        candidates.into_iter().find(|p| {
            let host = rootfs.join(p.trim_start_matches('/'));
            // Follow symlinks inside the image, not on the host.
            let out = Command::new("chroot")
                .arg(&rootfs)
                .args(["/bin/sh", "-c", &format!("[ -x '{p}' ]")])
                .status();
            host.symlink_metadata().is_ok() && out.is_ok_and(|s| s.success())
        })
    };

    let mut programs = BTreeSet::new();
    let mut plugins = BTreeSet::new();
    for c in &containers {
        let first = c
            .command
            .first()
            .unwrap_or_else(|| panic!("container {} has no command", c.name));
        programs.insert(first.clone());
        if c.command.last().map(String::as_str) == Some("-c") {
            let script = c.args.first().expect("a script after -c");
            programs.extend(command_words(script));
            plugins.extend(image_paths(script));
        }
    }
    // Not on the command lines, but run from the image all the same:
    // margay-node starts bgpd and felix-lite from its own directory, and
    // felix-lite runs nft for natOutgoing.
    programs.extend(["bgpd", "felix-lite", "nft"].map(String::from));
    assert!(programs.contains("margay-node"), "{programs:?}");
    assert!(programs.contains("/bin/sh"), "{programs:?}");
    assert!(
        plugins.contains("/usr/local/bin/margay"),
        "the install-cni script copies the plugin: {plugins:?}"
    );

    let missing: Vec<&String> =
        programs.iter().filter(|p| resolve(p).is_none()).collect();
    assert!(missing.is_empty(), "not in the image: {missing:?}");
    let missing: Vec<&String> =
        plugins.iter().filter(|p| resolve(p).is_none()).collect();
    assert!(missing.is_empty(), "not in the image: {missing:?}");

    // Each starts under chroot: --version, or its own way to say it
    // runs (dash has no --version; CNI plugins answer CNI_COMMAND=VERSION).
    let start = |program: &str, args: &[&str], env: Option<(&str, &str)>| {
        let mut cmd = Command::new("chroot");
        cmd.arg(&rootfs).arg(program).args(args).env_clear();
        cmd.env("PATH", &path_env);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("chroot");
        assert!(
            out.status.success(),
            "{program} {args:?} did not start in the image: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let version = env!("CARGO_PKG_VERSION");
    for p in &programs {
        let path = resolve(p).unwrap();
        if path.ends_with("/sh") {
            start(&path, &["-c", "exit 0"], None);
        } else {
            let out = start(&path, &["--version"], None);
            if path.starts_with("/usr/local/bin/") {
                assert!(out.contains(version), "{path}: {out}");
            }
        }
    }
    for p in &plugins {
        let out = start(p, &[], Some(("CNI_COMMAND", "VERSION")));
        assert!(out.contains("supportedVersions"), "{p}: {out}");
        // install-cni copies it to the host, which has whatever C library
        // it has: it must start with none at all (a root holding nothing
        // but the plugin).
        let bare = tmp.path().join("bare");
        std::fs::create_dir_all(&bare).unwrap();
        std::fs::copy(
            rootfs.join(p.trim_start_matches('/')),
            bare.join("plugin"),
        )
        .unwrap();
        let out = Command::new("chroot")
            .arg(&bare)
            .arg("/plugin")
            .env_clear()
            .env("PATH", &path_env)
            .env("CNI_COMMAND", "VERSION")
            .output()
            .expect("chroot");
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .contains("supportedVersions"),
            "{p} does not start without the image's libraries (not static?): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
