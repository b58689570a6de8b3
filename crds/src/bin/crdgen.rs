//! Prints the CRDs of every margay kind as multi-document YAML:
//! `cargo run -p margay-crds --bin crdgen > deploy/crds/margay.io.yaml`.

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let yaml = margay_crds::crd::crds_yaml()?;
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(())
}
