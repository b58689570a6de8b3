//! Certificates made with Debian's openssl (no crate for it in the tree):
//! CAs and certificates signed by them, P-256 keys. kube-apiserver's
//! serving certificate here, and testkit's etcd over TLS.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

/// What a certificate is for.
#[derive(Debug, Clone, Copy)]
pub enum Role<'a> {
    /// A server on 127.0.0.1/localhost and these addresses.
    Server(&'a [IpAddr]),
    /// A TLS client.
    Client,
}

const EC: [&str; 4] =
    ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// A self-signed CA with common name `cn`: `<name>.crt` and `<name>.key`
/// in `dir`.
pub fn make_ca(dir: &Path, name: &str, cn: &str) -> io::Result<()> {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    openssl(
        dir,
        &[
            &["req", "-x509", "-nodes", "-days", "2"],
            &EC[..],
            &["-subj", &format!("/CN={cn}"), "-keyout", &key, "-out", &crt],
        ],
    )
}

/// `<name>.crt`/`<name>.key` with common name `cn`, signed by CA `<ca>`,
/// for `role`.
pub fn make_cert(
    dir: &Path,
    ca: &str,
    name: &str,
    cn: &str,
    role: Role<'_>,
) -> io::Result<()> {
    let (crt, key, csr, ext) = (
        format!("{name}.crt"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            &["req", "-nodes"],
            &EC[..],
            &["-subj", &format!("/CN={cn}"), "-keyout", &key, "-out", &csr],
        ],
    )?;
    let usage = match role {
        Role::Server(addrs) => {
            let mut san = String::from("IP:127.0.0.1,DNS:localhost");
            for a in addrs {
                san.push_str(&format!(",IP:{a}"));
            }
            format!("subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
        }
        Role::Client => "extendedKeyUsage=clientAuth\n".to_string(),
    };
    std::fs::write(
        dir.join(&ext),
        format!(
            "{usage}basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n"
        ),
    )?;
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ]],
    )
}

/// Runs Debian's `openssl` in `dir` with the concatenated `args`.
pub fn openssl(dir: &Path, args: &[&[&str]]) -> io::Result<()> {
    let out = Command::new("openssl")
        .args(args.iter().flat_map(|a| a.iter()))
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run openssl (install Debian's openssl): {e}"),
            )
        })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "openssl {:?}: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}
