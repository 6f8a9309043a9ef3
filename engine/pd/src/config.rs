//! PD configuration.

/// How a PD runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdConfig {
    /// The address clients and stores reach this PD at (`GetMembers` answers it).
    pub advertise_addr: String,
    /// Replicas per region; the cluster bootstraps once this many stores are up.
    pub max_replicas: usize,
    /// The cluster id to take at first start. `None` derives one from the clock and the
    /// advertised address (deterministic under the simulator). Ignored once the cluster
    /// has an id on disk.
    pub cluster_id: Option<u64>,
}

impl Default for PdConfig {
    fn default() -> Self {
        PdConfig { advertise_addr: "127.0.0.1:2379".to_string(), max_replicas: 3, cluster_id: None }
    }
}

impl PdConfig {
    /// The default configuration advertising `addr`.
    pub fn new(advertise_addr: impl Into<String>) -> Self {
        PdConfig { advertise_addr: advertise_addr.into(), ..PdConfig::default() }
    }
}
