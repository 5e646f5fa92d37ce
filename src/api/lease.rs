//! `etcdserverpb.Lease` (COMPAT.md §2.4) over a `NodeHandle`: grant, revoke,
//! the keepalive stream, time-to-live and the lease list. The node decides
//! everything (see `server/lessor.rs`); this layer converts and keeps etcd's
//! answers for missing leases: a keepalive answers TTL 0 and a time-to-live
//! TTL −1, both without an error, while a revoke fails with
//! `etcdserver: requested lease not found`.
//!
//! The `serve_*` methods hold the logic without gRPC wrapping, for the JSON gateway.

use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use braid_proto::etcdserverpb as pb;
use braid_proto::etcdserverpb::lease_server::Lease;

use crate::api::convert;
use crate::api::errors::{respond, ApiError};
use crate::api::{check_access, LearnerAccess};
use crate::mvcc::{Backend, LeaseId};
use crate::server::lessor::{LeaseRequest, LeaseResponse};
use crate::server::NodeHandle;

pub struct LeaseService<B: Backend> {
    node: NodeHandle<B>,
}

impl<B: Backend> LeaseService<B> {
    pub fn new(node: NodeHandle<B>) -> Self {
        LeaseService { node }
    }

    pub async fn serve_grant(&self, request: pb::LeaseGrantRequest) -> Result<pb::LeaseGrantResponse, ApiError> {
        // etcd's quota check comes first: refused while NOSPACE is active, and a grant
        // past the quota raises it (the apply refuses a grant under NOSPACE as well).
        self.node.check_lease_grant_space().await?;
        let grant = LeaseRequest::Grant {
            id: LeaseId(request.id),
            ttl_seconds: request.ttl,
        };
        match self.node.lease(grant).await? {
            (LeaseResponse::Granted { id, ttl_seconds }, header) => Ok(pb::LeaseGrantResponse {
                header: Some(convert::response_header(header)),
                id: id.0,
                ttl: ttl_seconds,
                error: String::new(),
            }),
            (other, _) => unexpected_response("LeaseGrant", other),
        }
    }

    pub async fn serve_revoke(&self, request: pb::LeaseRevokeRequest) -> Result<pb::LeaseRevokeResponse, ApiError> {
        match self.node.lease(LeaseRequest::Revoke(LeaseId(request.id))).await? {
            (LeaseResponse::Revoked, header) => Ok(pb::LeaseRevokeResponse {
                header: Some(convert::response_header(header)),
            }),
            (other, _) => unexpected_response("LeaseRevoke", other),
        }
    }

    /// One keepalive of the stream.
    pub async fn serve_keep_alive(
        &self,
        request: pb::LeaseKeepAliveRequest,
    ) -> Result<pb::LeaseKeepAliveResponse, ApiError> {
        keep_alive(&self.node, request).await
    }

    pub async fn serve_time_to_live(
        &self,
        request: pb::LeaseTimeToLiveRequest,
    ) -> Result<pb::LeaseTimeToLiveResponse, ApiError> {
        let query = LeaseRequest::TimeToLive {
            id: LeaseId(request.id),
            keys: request.keys,
        };
        let (status, header) = match self.node.lease(query).await? {
            (LeaseResponse::TimeToLive(status), header) => (status, header),
            (other, _) => unexpected_response("LeaseTimeToLive", other),
        };
        let header = Some(convert::response_header(header));
        Ok(match status {
            Some(status) => pb::LeaseTimeToLiveResponse {
                header,
                id: request.id,
                ttl: status.remaining_seconds,
                granted_ttl: status.granted_ttl_seconds,
                keys: status.keys,
            },
            None => pb::LeaseTimeToLiveResponse {
                header,
                id: request.id,
                ttl: -1,
                ..Default::default()
            },
        })
    }

    pub async fn serve_leases(&self, _request: pb::LeaseLeasesRequest) -> Result<pb::LeaseLeasesResponse, ApiError> {
        match self.node.lease(LeaseRequest::Leases).await? {
            (LeaseResponse::Leases(ids), header) => Ok(pb::LeaseLeasesResponse {
                header: Some(convert::response_header(header)),
                leases: ids.into_iter().map(|id| pb::LeaseStatus { id: id.0 }).collect(),
            }),
            (other, _) => unexpected_response("LeaseLeases", other),
        }
    }
}

async fn keep_alive<B: Backend>(
    node: &NodeHandle<B>,
    request: pb::LeaseKeepAliveRequest,
) -> Result<pb::LeaseKeepAliveResponse, ApiError> {
    match node.lease(LeaseRequest::KeepAlive(LeaseId(request.id))).await? {
        (LeaseResponse::KeepAlive { ttl_seconds }, header) => Ok(pb::LeaseKeepAliveResponse {
            header: Some(convert::response_header(header)),
            id: request.id,
            ttl: ttl_seconds,
        }),
        (other, _) => unexpected_response("LeaseKeepAlive", other),
    }
}

/// The node answered a lease request with the answer to another kind: a bug in
/// the node loop, not something a client can cause.
fn unexpected_response(request: &str, response: LeaseResponse) -> ! {
    panic!("the node answered a {request} request with {response:?}")
}

#[tonic::async_trait]
impl<B: Backend> Lease for LeaseService<B> {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_grant(request.into_inner()).await)
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_revoke(request.into_inner()).await)
    }

    type LeaseKeepAliveStream = BoxStream<pb::LeaseKeepAliveResponse>;

    /// Answers each request in order; an error (no leader, timeout) ends the
    /// stream with its status, as etcd's does, and clients open a new one.
    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        let state = Some((self.node.clone(), request.into_inner()));
        let responses = futures_util::stream::unfold(state, |state| async move {
            let (node, mut inbound) = state?;
            let request = match inbound.message().await {
                Ok(Some(request)) => request,
                // The client closed its side (or went away): end quietly.
                Ok(None) | Err(_) => return None,
            };
            match keep_alive(&node, request).await {
                Ok(response) => Some((Ok(response), Some((node, inbound)))),
                Err(error) => Some((Err(Status::from(error)), None)),
            }
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_time_to_live(request.into_inner()).await)
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_leases(request.into_inner()).await)
    }
}
