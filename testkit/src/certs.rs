//! Test certificates made with Debian's openssl (no crate for it in the
//! tree): CAs and certificates signed by them, P-256 keys.

use std::io;
use std::path::Path;

pub(crate) use margay_apiserver::openssl;

const EC: [&str; 4] =
    ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// A self-signed CA: `<name>.crt` and `<name>.key` in `dir`.
pub(crate) fn make_ca(dir: &Path, name: &str) -> io::Result<()> {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    openssl(
        dir,
        &[
            &["req", "-x509", "-nodes", "-days", "2"],
            &EC[..],
            &[
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &key,
                "-out",
                &crt,
            ],
        ],
    )
}

/// `<name>.crt`/`<name>.key` signed by CA `<ca>`, for a server
/// (127.0.0.1/localhost) or a client (CN = `name`).
pub(crate) fn make_cert(
    dir: &Path,
    ca: &str,
    name: &str,
    server: bool,
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
            &[
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        ],
    )?;
    let usage = if server {
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         extendedKeyUsage=serverAuth\n"
    } else {
        "extendedKeyUsage=clientAuth\n"
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
