//! `keel ctl`: one-shot reads, writes and cluster inspection against a running cluster.

use crate::ctl_admin;
use clap::{Args, Subcommand};
use keel_client::{PdClient, RawClient};

/// Flags of `keel ctl`.
#[derive(Args)]
pub struct CtlArgs {
    /// PD endpoints, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub pd: Vec<String>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What `keel ctl` can do.
#[derive(Subcommand)]
pub enum CtlCommand {
    /// Write a key.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Time to live in seconds: after it the key is gone.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Read a key (prints the value, or exits 1 with "not found").
    Get {
        /// Key.
        key: String,
    },
    /// Delete a key.
    Delete {
        /// Key.
        key: String,
    },
    /// List keys in [START, END) (END empty: to the end), one "key<TAB>value" per line.
    Scan {
        /// Inclusive start.
        #[arg(default_value = "")]
        start: String,
        /// Exclusive end.
        #[arg(default_value = "")]
        end: String,
        /// Most pairs (1..=10240).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Newest-first from END downwards.
        #[arg(long)]
        reverse: bool,
    },
    /// Set KEY to NEW only if its value is EXPECTED (or absent with --absent).
    Cas {
        /// Key.
        key: String,
        /// New value.
        new: String,
        /// Required current value.
        #[arg(long, conflicts_with = "absent")]
        expected: Option<String>,
        /// Require the key to be absent.
        #[arg(long)]
        absent: bool,
    },
    /// List the stores PD knows.
    Stores,
    /// List the regions PD knows, in key order.
    Regions,
    /// Get one timestamp from PD's TSO.
    Tso,
    /// Show the region holding KEY.
    Region {
        /// Key.
        key: String,
    },
    /// Split the region holding KEY so that KEY starts a new region.
    Split {
        /// Split key.
        key: String,
    },
    /// Move REGION's leadership to its voter on STORE (waits until PD sees the new leader).
    TransferLeader {
        /// Region id.
        region: u64,
        /// Store id.
        store: u64,
    },
    /// Remove STORE: PD moves its replicas to other stores, then marks it Tombstone.
    RemoveStore {
        /// Store id.
        store: u64,
    },
    /// Show PD's GC safe point, or advance it with --set (it never moves back; locks of
    /// transactions that started below it are settled first).
    GcSafepoint {
        /// New safe point (a TSO timestamp).
        #[arg(long)]
        set: Option<u64>,
    },
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs one ctl command.
pub async fn run(args: CtlArgs) -> Result<(), String> {
    let pd = PdClient::new(args.pd.clone());
    let raw = || async { RawClient::connect(args.pd.clone()).await.map_err(|e| e.to_string()) };
    match args.command {
        CtlCommand::Put { key, value, ttl } => {
            let (client, key, value) = (raw().await?, key.into_bytes(), value.into_bytes());
            match ttl {
                Some(secs) => client.put_with_ttl(key, value, std::time::Duration::from_secs(secs)).await,
                None => client.put(key, value).await,
            }
            .map_err(|e| e.to_string())?;
            println!("OK");
        }
        CtlCommand::Get { key } => match raw().await?.get(key.into_bytes()).await.map_err(|e| e.to_string())? {
            Some(v) => println!("{}", show(&v)),
            None => return Err("not found".into()),
        },
        CtlCommand::Delete { key } => {
            raw().await?.delete(key.into_bytes()).await.map_err(|e| e.to_string())?;
            println!("OK");
        }
        CtlCommand::Scan { start, end, limit, reverse } => {
            let client = raw().await?;
            let (start, end) = (start.into_bytes(), end.into_bytes());
            let pairs = if reverse {
                client.scan_reverse(start, end, limit).await
            } else {
                client.scan(start, end, limit).await
            }
            .map_err(|e| e.to_string())?;
            for (k, v) in pairs {
                println!("{}\t{}", show(&k), show(&v));
            }
        }
        CtlCommand::Cas { key, new, expected, absent } => {
            if expected.is_none() && !absent {
                return Err("cas needs --expected VALUE or --absent".into());
            }
            let client = raw().await?;
            let (previous, swapped) = client
                .compare_and_swap(key.into_bytes(), expected.map(String::into_bytes), new.into_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let previous = previous.map_or_else(|| "(absent)".to_string(), |v| show(&v));
            if swapped {
                println!("OK (was {previous})");
            } else {
                return Err(format!("not swapped: current value is {previous}"));
            }
        }
        CtlCommand::Stores => {
            for s in pd.get_all_stores().await.map_err(|e| e.to_string())? {
                let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("{}\t{}\t{:?}\t{}", s.id, s.address, s.state, labels.join(","));
            }
        }
        CtlCommand::Regions => {
            for r in pd.scan_regions(b"", b"", 0).await.map_err(|e| e.to_string())? {
                println!("{}", ctl_admin::format_region(&r));
            }
        }
        CtlCommand::Tso => println!("{}", pd.get_ts().await.map_err(|e| e.to_string())?),
        CtlCommand::Region { key } => ctl_admin::region(&pd, key.into_bytes()).await?,
        CtlCommand::Split { key } => ctl_admin::split(&pd, key.into_bytes()).await?,
        CtlCommand::TransferLeader { region, store } => ctl_admin::transfer_leader(&pd, region, store).await?,
        CtlCommand::RemoveStore { store } => ctl_admin::remove_store(&pd, store).await?,
        CtlCommand::GcSafepoint { set } => ctl_admin::gc_safe_point(&pd, set).await?,
    }
    Ok(())
}
