//! TiKV's `pdpb.PD` gRPC service in front of keel's PD: each RPC becomes the native
//! [`PdRequest`] it means and goes through the same [`PdCaller`] path, so nothing here
//! implements PD behaviour. Production build only.
//!
//! Region boundaries are answered in the encoding the asking client uses: a key that is a
//! complete memcomparable encoding marks a transactional client (see
//! [`keel_kvproto::convert::key_from_pd_query`]). `GetRegionByID` carries no key and answers
//! raw boundaries (tikv-client's transactional client never calls it).

use crate::service::PdCaller;
use futures::{Stream, StreamExt};
use keel_kvproto::convert::{key_from_pd_query, peer_to_pb, region_to_pb, timestamp_to_pb};
use keel_kvproto::metapb;
use keel_kvproto::pdpb::pd_server::{Pd, PdServer};
use keel_kvproto::pdpb::*;
use keel_types::proto::pd::{PdError, PdRequest, PdResponse, RegionInfo, Store, StoreState};
use keel_types::Timestamp;
use std::pin::Pin;
use tonic::{Request, Response, Status, Streaming};

/// The generated server around the adapter, ready for `serve_grpc`.
pub(crate) fn service(caller: PdCaller) -> PdServer<PdGrpc> {
    PdServer::new(PdGrpc { caller })
}

/// The adapter over the native caller (which also knows the cluster id every response
/// header carries).
#[derive(Clone)]
pub(crate) struct PdGrpc {
    caller: PdCaller,
}

fn header(cluster_id: u64, error: Option<&PdError>) -> Option<ResponseHeader> {
    let error = error.map(|e| {
        let kind = match e {
            PdError::NotBootstrapped => ErrorType::NotBootstrapped,
            PdError::StoreTombstone(_) => ErrorType::StoreTombstone,
            _ => ErrorType::Unknown,
        };
        Error { r#type: kind as i32, message: e.to_string() }
    });
    Some(ResponseHeader { cluster_id, error })
}

fn unexpected(resp: PdResponse) -> PdError {
    PdError::Unavailable(format!("unexpected pd answer {resp:?}"))
}

fn store_to_pb(store: Store) -> metapb::Store {
    let state = match store.state {
        StoreState::Up => metapb::StoreState::Up,
        StoreState::Offline => metapb::StoreState::Offline,
        StoreState::Tombstone => metapb::StoreState::Tombstone,
    };
    metapb::Store {
        id: store.id,
        peer_address: store.address.clone(),
        address: store.address,
        state: state as i32,
        labels: store.labels.into_iter().map(|(key, value)| metapb::StoreLabel { key, value }).collect(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        status_address: store.status_address,
    }
}

fn region_response(cluster_id: u64, found: Result<Option<RegionInfo>, PdError>, encoded: bool) -> GetRegionResponse {
    match found {
        Ok(info) => GetRegionResponse {
            header: header(cluster_id, None),
            region: info.as_ref().map(|i| region_to_pb(&i.region, encoded)),
            leader: info.as_ref().and_then(|i| i.leader.as_ref()).map(peer_to_pb),
            ..Default::default()
        },
        Err(e) => GetRegionResponse { header: header(cluster_id, Some(&e)), ..Default::default() },
    }
}

impl PdGrpc {
    async fn region(&self, req: PdRequest) -> Result<Option<RegionInfo>, PdError> {
        match self.caller.call(req).await? {
            PdResponse::Region(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    async fn scan(&self, start_key: Vec<u8>, end_key: Vec<u8>, limit: u32) -> Result<Vec<RegionInfo>, PdError> {
        match self.caller.call(PdRequest::ScanRegions { start_key, end_key, limit }).await? {
            PdResponse::Regions(regions) => Ok(regions),
            other => Err(unexpected(other)),
        }
    }

    /// The region that ends where the one containing `key` starts.
    async fn prev_region(&self, key: Vec<u8>) -> Result<Option<RegionInfo>, PdError> {
        let Some(current) = self.region(PdRequest::GetRegion { key }).await? else { return Ok(None) };
        if current.region.start_key.is_empty() {
            return Ok(None);
        }
        Ok(self.scan(vec![], current.region.start_key, 0).await?.pop())
    }

    async fn tso_response(&self, req: TsoRequest) -> TsoResponse {
        let answer = match self.caller.call(PdRequest::Tso { count: req.count }).await {
            Ok(PdResponse::Tso { ts, count }) => Ok((ts, count)),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        };
        match answer {
            Ok((ts, count)) => TsoResponse {
                header: header(self.caller.cluster_id(), None),
                count,
                timestamp: Some(timestamp_to_pb(ts)),
            },
            Err(e) => TsoResponse { header: header(self.caller.cluster_id(), Some(&e)), count: 0, timestamp: None },
        }
    }
}

type TsoResponses = Pin<Box<dyn Stream<Item = Result<TsoResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Pd for PdGrpc {
    async fn get_members(&self, _: Request<GetMembersRequest>) -> Result<Response<GetMembersResponse>, Status> {
        let resp = match self.caller.call(PdRequest::GetMembers).await {
            Ok(PdResponse::Members { cluster_id, leader }) => {
                let member = Member {
                    name: format!("keel-pd-{leader}"),
                    member_id: cluster_id,
                    peer_urls: vec![format!("http://{leader}")],
                    client_urls: vec![format!("http://{leader}")],
                };
                GetMembersResponse {
                    header: header(cluster_id, None),
                    members: vec![member.clone()],
                    leader: Some(member.clone()),
                    etcd_leader: Some(member),
                }
            }
            Ok(other) => GetMembersResponse {
                header: header(self.caller.cluster_id(), Some(&unexpected(other))),
                ..Default::default()
            },
            Err(e) => GetMembersResponse { header: header(self.caller.cluster_id(), Some(&e)), ..Default::default() },
        };
        Ok(Response::new(resp))
    }

    type TsoStream = TsoResponses;

    /// One response per request, in order: `.then` runs them one at a time.
    async fn tso(&self, req: Request<Streaming<TsoRequest>>) -> Result<Response<TsoResponses>, Status> {
        let adapter = self.clone();
        let responses = req.into_inner().then(move |req| {
            let adapter = adapter.clone();
            async move {
                match req {
                    Ok(req) => Ok(adapter.tso_response(req).await),
                    Err(status) => Err(status),
                }
            }
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn get_store(&self, req: Request<GetStoreRequest>) -> Result<Response<GetStoreResponse>, Status> {
        let id = req.into_inner().store_id;
        let found = match self.caller.call(PdRequest::GetStore(id)).await {
            Ok(PdResponse::Store(Some(store))) => Ok(store),
            Ok(PdResponse::Store(None)) => Err(PdError::Invalid(format!("store {id} not found"))),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        };
        let resp = match found {
            Ok(store) => {
                GetStoreResponse { header: header(self.caller.cluster_id(), None), store: Some(store_to_pb(store)) }
            }
            Err(e) => GetStoreResponse { header: header(self.caller.cluster_id(), Some(&e)), store: None },
        };
        Ok(Response::new(resp))
    }

    async fn get_all_stores(
        &self,
        req: Request<GetAllStoresRequest>,
    ) -> Result<Response<GetAllStoresResponse>, Status> {
        let exclude_tombstones = req.into_inner().exclude_tombstone_stores;
        let resp = match self.caller.call(PdRequest::GetAllStores).await {
            Ok(PdResponse::Stores(stores)) => GetAllStoresResponse {
                header: header(self.caller.cluster_id(), None),
                stores: stores
                    .into_iter()
                    .filter(|s| !(exclude_tombstones && s.state == StoreState::Tombstone))
                    .map(store_to_pb)
                    .collect(),
            },
            Ok(other) => GetAllStoresResponse {
                header: header(self.caller.cluster_id(), Some(&unexpected(other))),
                stores: vec![],
            },
            Err(e) => GetAllStoresResponse { header: header(self.caller.cluster_id(), Some(&e)), stores: vec![] },
        };
        Ok(Response::new(resp))
    }

    async fn get_region(&self, req: Request<GetRegionRequest>) -> Result<Response<GetRegionResponse>, Status> {
        let (key, encoded) = key_from_pd_query(&req.into_inner().region_key);
        let found = self.region(PdRequest::GetRegion { key }).await;
        Ok(Response::new(region_response(self.caller.cluster_id(), found, encoded)))
    }

    async fn get_prev_region(&self, req: Request<GetRegionRequest>) -> Result<Response<GetRegionResponse>, Status> {
        let (key, encoded) = key_from_pd_query(&req.into_inner().region_key);
        Ok(Response::new(region_response(self.caller.cluster_id(), self.prev_region(key).await, encoded)))
    }

    async fn get_region_by_id(
        &self,
        req: Request<GetRegionByIdRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        let found = self.region(PdRequest::GetRegionById(req.into_inner().region_id)).await;
        Ok(Response::new(region_response(self.caller.cluster_id(), found, false)))
    }

    async fn scan_regions(&self, req: Request<ScanRegionsRequest>) -> Result<Response<ScanRegionsResponse>, Status> {
        let req = req.into_inner();
        let (start_key, encoded) = key_from_pd_query(&req.start_key);
        let end_key = if encoded { key_from_pd_query(&req.end_key).0 } else { req.end_key };
        let resp = match self.scan(start_key, end_key, req.limit.max(0) as u32).await {
            Ok(regions) => {
                let metas: Vec<metapb::Region> = regions.iter().map(|i| region_to_pb(&i.region, encoded)).collect();
                let leaders: Vec<metapb::Peer> =
                    regions.iter().map(|i| i.leader.as_ref().map(peer_to_pb).unwrap_or_default()).collect();
                ScanRegionsResponse {
                    header: header(self.caller.cluster_id(), None),
                    regions: metas
                        .iter()
                        .zip(&regions)
                        .map(|(meta, info)| Region {
                            region: Some(meta.clone()),
                            leader: info.leader.as_ref().map(peer_to_pb),
                            ..Default::default()
                        })
                        .collect(),
                    region_metas: metas,
                    leaders,
                }
            }
            Err(e) => ScanRegionsResponse { header: header(self.caller.cluster_id(), Some(&e)), ..Default::default() },
        };
        Ok(Response::new(resp))
    }

    async fn get_gc_safe_point(
        &self,
        _: Request<GetGcSafePointRequest>,
    ) -> Result<Response<GetGcSafePointResponse>, Status> {
        let resp = match self.caller.call(PdRequest::GetGcSafePoint).await {
            Ok(PdResponse::GcSafePoint(ts)) => {
                GetGcSafePointResponse { header: header(self.caller.cluster_id(), None), safe_point: ts.0 }
            }
            Ok(other) => GetGcSafePointResponse {
                header: header(self.caller.cluster_id(), Some(&unexpected(other))),
                safe_point: 0,
            },
            Err(e) => GetGcSafePointResponse { header: header(self.caller.cluster_id(), Some(&e)), safe_point: 0 },
        };
        Ok(Response::new(resp))
    }

    async fn update_gc_safe_point(
        &self,
        req: Request<UpdateGcSafePointRequest>,
    ) -> Result<Response<UpdateGcSafePointResponse>, Status> {
        let wanted = Timestamp(req.into_inner().safe_point);
        let resp = match self.caller.call(PdRequest::UpdateGcSafePoint(wanted)).await {
            Ok(PdResponse::GcSafePoint(ts)) => {
                UpdateGcSafePointResponse { header: header(self.caller.cluster_id(), None), new_safe_point: ts.0 }
            }
            Ok(other) => UpdateGcSafePointResponse {
                header: header(self.caller.cluster_id(), Some(&unexpected(other))),
                new_safe_point: 0,
            },
            Err(e) => {
                UpdateGcSafePointResponse { header: header(self.caller.cluster_id(), Some(&e)), new_safe_point: 0 }
            }
        };
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
mod tests;
