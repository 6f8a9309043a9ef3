//! Stable method names of requests, for per-method metrics (`keel_rpc_duration_seconds`)
//! and logs: one `&'static str` per request kind, never the request's contents.

use super::pd::PdRequest;
use super::store::{RawCommand, StoreRequest};
use super::txn::TxnCommand;

impl StoreRequest {
    /// The method's name, e.g. `raw_put`, `txn_prewrite`, `raft`.
    pub fn method(&self) -> &'static str {
        match self {
            StoreRequest::Raft(_) => "raft",
            StoreRequest::Raw { cmd, .. } => cmd.method(),
            StoreRequest::Txn { cmd, .. } => cmd.method(),
            StoreRequest::SplitRegion { .. } => "split_region",
        }
    }
}

impl RawCommand {
    /// The command's method name.
    pub fn method(&self) -> &'static str {
        match self {
            RawCommand::Get { .. } => "raw_get",
            RawCommand::BatchGet { .. } => "raw_batch_get",
            RawCommand::Put { .. } => "raw_put",
            RawCommand::BatchPut { .. } => "raw_batch_put",
            RawCommand::Delete { .. } => "raw_delete",
            RawCommand::BatchDelete { .. } => "raw_batch_delete",
            RawCommand::DeleteRange { .. } => "raw_delete_range",
            RawCommand::Scan { .. } => "raw_scan",
            RawCommand::CompareAndSwap { .. } => "raw_cas",
            RawCommand::GetKeyTtl { .. } => "raw_get_key_ttl",
        }
    }
}

impl TxnCommand {
    /// The command's method name.
    pub fn method(&self) -> &'static str {
        match self {
            TxnCommand::Get { .. } => "txn_get",
            TxnCommand::BatchGet { .. } => "txn_batch_get",
            TxnCommand::Scan { .. } => "txn_scan",
            TxnCommand::Prewrite { .. } => "txn_prewrite",
            TxnCommand::Commit { .. } => "txn_commit",
            TxnCommand::BatchRollback { .. } => "txn_batch_rollback",
            TxnCommand::Cleanup { .. } => "txn_cleanup",
            TxnCommand::CheckTxnStatus { .. } => "txn_check_txn_status",
            TxnCommand::CheckSecondaryLocks { .. } => "txn_check_secondary_locks",
            TxnCommand::ResolveLock { .. } => "txn_resolve_lock",
            TxnCommand::TxnHeartBeat { .. } => "txn_heartbeat",
            TxnCommand::ScanLock { .. } => "txn_scan_lock",
            TxnCommand::Gc { .. } => "txn_gc",
            TxnCommand::DeleteRange { .. } => "txn_delete_range",
        }
    }
}

impl PdRequest {
    /// The method's name, e.g. `tso`, `region_heartbeat`.
    pub fn method(&self) -> &'static str {
        match self {
            PdRequest::GetMembers => "pd_get_members",
            PdRequest::GetBootstrapRegion => "pd_get_bootstrap_region",
            PdRequest::AllocId { .. } => "pd_alloc_id",
            PdRequest::PutStore(_) => "pd_put_store",
            PdRequest::GetStore(_) => "pd_get_store",
            PdRequest::GetAllStores => "pd_get_all_stores",
            PdRequest::StoreHeartbeat(_) => "pd_store_heartbeat",
            PdRequest::RegionHeartbeat(_) => "pd_region_heartbeat",
            PdRequest::GetRegion { .. } => "pd_get_region",
            PdRequest::GetRegionById(_) => "pd_get_region_by_id",
            PdRequest::ScanRegions { .. } => "pd_scan_regions",
            PdRequest::Tso { .. } => "pd_tso",
            PdRequest::GetGcSafePoint => "pd_get_gc_safe_point",
            PdRequest::UpdateGcSafePoint(_) => "pd_update_gc_safe_point",
            PdRequest::AskSplit { .. } => "pd_ask_split",
            PdRequest::ReportSplit { .. } => "pd_report_split",
            PdRequest::AddOperator { .. } => "pd_add_operator",
            PdRequest::GetOperatorStatus => "pd_get_operator_status",
            PdRequest::RaftMessage(_) => "pd_raft_message",
        }
    }
}
