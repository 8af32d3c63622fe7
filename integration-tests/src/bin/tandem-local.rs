//! `tandem-local`: starts a local tandem cluster (private MariaDB instances,
//! one participant each, two coordinator replicas), runs the demo, prints
//! the replicas' addresses, and keeps running until Ctrl-C, which stops
//! everything.

use anyhow::{Context, Result};
use clap::Parser;
use tandem_common::{Identity, Role};
use tandem_integration_tests::demo::Demo;
use tandem_integration_tests::{Cluster, ClusterConfig};

#[derive(Debug, Parser)]
#[command(name = "tandem-local", version)]
struct Args {
    /// Number of participants (one private MariaDB each).
    #[arg(long, default_value_t = 3)]
    participants: usize,
    /// Number of coordinator replicas (stateless; any serves any client).
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Skip the demo transactions.
    #[arg(long)]
    no_demo: bool,
    /// Stop after the demo instead of waiting for Ctrl-C.
    #[arg(long)]
    exit: bool,
    /// Keep the cluster's directory (data and logs) after stopping.
    #[arg(long)]
    keep: bool,
}

/// The client principal the demo (and a grpcurl call) acts as.
const DEMO_PRINCIPAL: &str = "demo";

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.participants >= 1, "--participants must be at least 1");
    anyhow::ensure!(args.replicas >= 1, "--replicas must be at least 1");
    // Children die with the thread that spawned them: keep the runtime on
    // this (main) thread.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let names: Vec<String> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain((4..).map(|i| format!("p{i}")))
        .take(args.participants)
        .collect();
    println!(
        "starting {} MariaDB instances, {} participants and {} coordinator replicas…",
        names.len(),
        names.len(),
        args.replicas
    );
    let cluster = Cluster::start(ClusterConfig {
        participants: names.clone(),
        replicas: args.replicas,
        keep_dir: args.keep,
        ..ClusterConfig::default()
    })
    .await?;
    for i in 0..cluster.replica_count() {
        let name = tandem_integration_tests::cluster::replica_name(i);
        let admin = cluster
            .admin_addr(&tandem_integration_tests::cluster::Target::Coordinator(i))
            .map_or_else(String::new, |addr| {
                format!("  status page http://{addr}/  metrics http://{addr}/metrics")
            });
        println!(
            "coordinator {name:<4} {} (TLS, identity {name}.coordinator.tandem){admin}",
            cluster.replica_url(i)
        );
    }
    for node in cluster.nodes() {
        println!(
            "participant {:<6} grpc https://{}  mariadb socket {}  metrics http://{}/metrics",
            node.name,
            node.addr,
            node.db.socket().display(),
            node.admin_addr
        );
    }
    println!("logs and data: {}", cluster.dir().display());
    // The demo's client identity, for tools like grpcurl.
    let demo_client = Identity::new(Role::Client, DEMO_PRINCIPAL).map_err(anyhow::Error::msg)?;
    let ca = cluster.ca().context("the local cluster runs with TLS")?;
    let issued = ca.issue(&demo_client)?;

    if !args.no_demo && names.len() < 3 {
        println!("\nthe demo needs 3 participants; skipping it");
    } else if !args.no_demo {
        let mut demo = Demo {
            client: cluster.access(DEMO_PRINCIPAL)?.connect().await?,
            bank_a: &names[0],
            bank_b: &names[1],
            shop: &names[1],
            warehouse: &names[2],
        };
        println!();
        demo.run().await?;
        let left = cluster.prepared_branches().await?;
        println!("\nprepared XA branches left on any database: {}", left.len());
    }

    if !args.exit {
        println!(
            "\ncluster running; a throwaway CA issued every certificate (TLS everywhere). Try:\n  grpcurl -cacert {} -cert {} -key {} {} list",
            ca.ca_path().display(),
            issued.cert.display(),
            issued.key.display(),
            cluster.coordinator_url().trim_start_matches("https://")
        );
        println!("press Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
        println!("stopping…");
    }
    cluster.shutdown();
    Ok(())
}
