//! `etcdserverpb.Maintenance` (COMPAT.md §2.6). Served: Status (everything `etcdctl endpoint
//! status` shows), Hash and HashKV (local, like etcd's), and Alarm GET (braid raises no
//! alarms yet, so the list is empty; `etcdctl endpoint health` needs the call to succeed).
//! Alarm ACTIVATE/DEACTIVATE, Defragment, Snapshot, MoveLeader and Downgrade answer
//! UNIMPLEMENTED until their machinery exists.

use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use braid_proto::etcdserverpb as pb;
use braid_proto::etcdserverpb::alarm_request::AlarmAction;
use braid_proto::etcdserverpb::maintenance_server::Maintenance;

use crate::api::convert::response_header;
use crate::api::errors::{not_implemented, respond, ApiError, EtcdError};
use crate::api::snapshot::SnapshotChunks;
use crate::api::version::SERVER_VERSION;
use crate::api::{check_access, LearnerAccess};
use crate::mvcc::{Backend, Revision};
use crate::server::{Header, NodeHandle};

pub struct MaintenanceService<B: Backend> {
    node: NodeHandle<B>,
}

impl<B: Backend> MaintenanceService<B> {
    pub fn new(node: NodeHandle<B>) -> Self {
        MaintenanceService { node }
    }

    /// etcd's `Status`: the member's view of itself. `errors` lists `etcdserver: no leader`
    /// while leaderless (alarms would follow, once braid has them).
    pub fn serve_status(&self) -> pb::StatusResponse {
        // One snapshot of the status, so the header's term and the body agree.
        let status = self.node.status();
        let header = Header {
            cluster_id: self.node.cluster_id(),
            member_id: self.node.member_id(),
            revision: self.node.store().current_revision().0,
            raft_term: status.raft_term,
        };
        let mut errors = Vec::new();
        if status.leader == 0 {
            errors.push(EtcdError::NoLeader.message().to_string());
        }
        pb::StatusResponse {
            header: Some(response_header(header)),
            version: SERVER_VERSION.to_string(),
            db_size: status.db_size_bytes,
            leader: status.leader,
            raft_index: status.raft_index,
            raft_term: status.raft_term,
            raft_applied_index: status.raft_applied_index,
            errors,
            db_size_in_use: status.db_size_in_use_bytes,
            is_learner: status.is_learner,
        }
    }

    pub fn serve_hash(&self) -> Result<pb::HashResponse, ApiError> {
        let result = self.node.store().hash()?;
        Ok(pb::HashResponse {
            header: Some(self.header_at(result.revision)),
            hash: result.hash,
        })
    }

    pub fn serve_hash_kv(&self, request: pb::HashKvRequest) -> Result<pb::HashKvResponse, ApiError> {
        let result = self.node.store().hash_kv(Revision(request.revision))?;
        Ok(pb::HashKvResponse {
            header: Some(self.header_at(result.revision)),
            hash: result.hash,
            compact_revision: result.compact_revision.0,
        })
    }

    /// etcd sends every Alarm request, GET included, through Raft; the barrier keeps GET
    /// linearizable the same way (and failing the same way on a member cut off from a quorum).
    pub async fn serve_alarm(&self, request: pb::AlarmRequest) -> Result<pb::AlarmResponse, ApiError> {
        let action = AlarmAction::try_from(request.action).map_err(|_| ApiError::UnknownEnumValue {
            field: "AlarmRequest.action",
            value: request.action,
        })?;
        match action {
            AlarmAction::Get => {
                self.node.linearizable_barrier().await?;
                Ok(pb::AlarmResponse {
                    header: Some(response_header(self.node.header())),
                    alarms: Vec::new(),
                })
            }
            AlarmAction::Activate => Err(ApiError::Unimplemented {
                rpc: "Maintenance.Alarm ACTIVATE",
            }),
            AlarmAction::Deactivate => Err(ApiError::Unimplemented {
                rpc: "Maintenance.Alarm DEACTIVATE",
            }),
        }
    }

    fn header_at(&self, revision: Revision) -> pb::ResponseHeader {
        response_header(Header {
            revision: revision.0,
            ..self.node.header()
        })
    }
}

#[tonic::async_trait]
impl<B: Backend> Maintenance for MaintenanceService<B> {
    async fn alarm(&self, request: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_alarm(request.into_inner()).await)
    }

    async fn status(&self, request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Allowed)?;
        Ok(Response::new(self.serve_status()))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        not_implemented("Maintenance.Defragment")
    }

    async fn hash(&self, request: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_hash())
    }

    async fn hash_kv(&self, request: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_hash_kv(request.into_inner()))
    }

    type SnapshotStream = BoxStream<pb::SnapshotResponse>;

    /// etcd serves snapshots on learners too (`isRPCSupportedForLearner`).
    async fn snapshot(&self, request: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Allowed)?;
        let header = response_header(self.node.header());
        let image = self.node.store().backend().image().map_err(ApiError::from)?;
        let chunks = SnapshotChunks::new(image, header)?;
        Ok(Response::new(chunks.into_stream()))
    }

    async fn move_leader(
        &self,
        _request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        not_implemented("Maintenance.MoveLeader")
    }

    async fn downgrade(
        &self,
        _request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        not_implemented("Maintenance.Downgrade")
    }
}
