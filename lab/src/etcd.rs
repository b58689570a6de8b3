//! The lab's etcd: started on the host link's address, killed and
//! restarted by the failure tests, and filled with the lab's resources.

use std::path::Path;
use std::time::{Duration, Instant};

use margay_crds::AnyResource;
use margay_datastore::{Datastore, DatastoreSpec};

use crate::state::LabState;
use crate::sys::{run, spawn_detached};
use crate::topology::{self, Topology};
use crate::{LabError, LabOptions};

/// Starts etcd on the host link's address (the nodes reach it over the
/// fabric segment) with its data in `dir`; returns its pid. A busy client
/// port is an error that says what to do.
pub(crate) fn start_etcd(dir: &Path) -> Result<u32, LabError> {
    let addr = format!("{}:{}", topology::host_v4(), topology::ETCD_PORT);
    if let Err(e) = std::net::TcpListener::bind(&addr) {
        return Err(LabError::PortBusy {
            addr,
            detail: e.to_string(),
        });
    }
    let client = format!("http://{addr}");
    // A fixed peer port, so a restarted etcd finds its member unchanged.
    let peer = format!("http://127.0.0.1:{}", topology::ETCD_PORT + 1);
    let args = vec![
        "--name=margay-lab".to_string(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=margay-lab={peer}"),
        "--log-level=warn".to_string(),
    ];
    spawn_detached(None, Path::new("etcd"), &args, &dir.join("logs/etcd.log"))
}

/// Kills the lab's etcd (as a crash would); the data stays.
pub fn stop_etcd(opts: &LabOptions) -> Result<(), LabError> {
    let mut state = LabState::load(&opts.state_dir)?
        .ok_or_else(|| LabError::State("no lab is running".into()))?;
    if let Some(pid) = state.etcd_pid.take() {
        let _ = run("kill", &["-9", &pid.to_string()]);
        while crate::sys::alive(pid) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    state.save()
}

/// Starts the lab's etcd again on its data and waits until it answers.
pub async fn start_etcd_again(opts: &LabOptions) -> Result<(), LabError> {
    let mut state = LabState::load(&opts.state_dir)?
        .ok_or_else(|| LabError::State("no lab is running".into()))?;
    state.etcd_pid = Some(start_etcd(&opts.state_dir)?);
    state.save()?;
    wait_datastore(&state.admin_datastore()).await.map(drop)
}

/// Connects to the datastore once it answers (30 s at most).
pub(crate) async fn wait_datastore(
    spec: &DatastoreSpec,
) -> Result<Datastore, LabError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            let ds = Datastore::connect(spec).await?;
            ds.list::<margay_crds::IPPool>().await?;
            Ok::<_, margay_datastore::DatastoreError>(ds)
        };
        match attempt.await {
            Ok(ds) => return Ok(ds),
            Err(e) if Instant::now() > deadline => {
                return Err(LabError::Timeout {
                    what: "the datastore".into(),
                    detail: e.to_string(),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Creates the lab's BGPConfiguration, IPPools and BGPPeers.
pub(crate) async fn apply_resources(
    ds: &Datastore,
    topo: &Topology,
) -> Result<(), LabError> {
    let docs = margay_crds::parse_documents(&topo.resources_yaml())
        .map_err(|e| LabError::Resources(e.to_string()))?;
    for doc in docs {
        match doc {
            AnyResource::BGPConfiguration(r) => drop(ds.create(&r).await?),
            AnyResource::IPPool(r) => drop(ds.create(&r).await?),
            AnyResource::BGPPeer(r) => drop(ds.create(&r).await?),
            other => {
                return Err(LabError::Resources(format!(
                    "unexpected {} in the lab resources",
                    other.kind()
                )));
            }
        }
    }
    Ok(())
}
