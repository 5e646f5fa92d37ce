//! `etcdserverpb.Maintenance` (COMPAT.md §2.6). Served: Status (everything `etcdctl endpoint
//! status` shows, alarms in `errors`), Hash and HashKV (local, like etcd's), Alarm (GET,
//! ACTIVATE, DEACTIVATE, replicated through Raft: `server::alarms`), Snapshot (the stream in
//! `snapshot.rs`), Defragment and MoveLeader. Downgrade answers UNIMPLEMENTED.
//!
//! Defragment: braid's copy-on-write B+tree reuses freed pages in later commits, so there is
//! no fragmentation to undo for space to come back; what Defragment does is finish this
//! member's physical compaction (dead revisions leave the state file and their pages join
//! the free list), in bounded steps between writes, never blocking them for long. The file
//! itself does not shrink (dbSize stays, dbSizeInUse drops); shrinking it would need a
//! truncate in the page store and relocating the pages at the end of the file.

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
use crate::raft::NodeId;
use crate::server::alarms::{AlarmChange, AlarmKind, AlarmMember};
use crate::server::{self, Header, NodeHandle};

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
        errors.extend(self.node.alarms().list().iter().map(AlarmMember::status_text));
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
        let alarm = match pb::AlarmType::try_from(request.alarm) {
            Ok(pb::AlarmType::None) => None,
            Ok(_) => AlarmKind::from_number(request.alarm),
            Err(_) => {
                return Err(ApiError::UnknownEnumValue {
                    field: "AlarmRequest.alarm",
                    value: request.alarm,
                })
            }
        };
        let action = match action {
            AlarmAction::Get => {
                self.node.linearizable_barrier().await?;
                // etcd lists every alarm, or those of one type.
                let alarms = self.node.alarms().list().into_iter();
                let alarms = alarms.filter(|member| alarm.is_none_or(|alarm| member.alarm == alarm));
                return Ok(pb::AlarmResponse {
                    header: Some(response_header(self.node.header())),
                    alarms: alarms.map(alarm_member_to_proto).collect(),
                });
            }
            AlarmAction::Activate => server::alarms::AlarmAction::Activate,
            AlarmAction::Deactivate => server::alarms::AlarmAction::Deactivate,
        };
        // etcd's applier ignores a change of alarm NONE (and still answers).
        let Some(alarm) = alarm else {
            self.node.linearizable_barrier().await?;
            return Ok(pb::AlarmResponse {
                header: Some(response_header(self.node.header())),
                alarms: Vec::new(),
            });
        };
        let change = AlarmChange {
            action,
            member: AlarmMember {
                member_id: request.member_id,
                alarm,
            },
        };
        let (changed, header) = self.node.change_alarm(change).await?;
        Ok(pb::AlarmResponse {
            header: Some(response_header(header)),
            alarms: changed.into_iter().map(alarm_member_to_proto).collect(),
        })
    }

    /// Finishes this member's physical compaction (see the module doc).
    pub async fn serve_defragment(&self) -> Result<pb::DefragmentResponse, ApiError> {
        self.node.store().finish_compaction().await?;
        Ok(pb::DefragmentResponse {
            header: Some(response_header(self.node.header())),
        })
    }

    /// etcd's MoveLeader: only the leader accepts it (`not leader` elsewhere), the target
    /// must be a voter, and the call returns once the target leads.
    pub async fn serve_move_leader(&self, request: pb::MoveLeaderRequest) -> Result<pb::MoveLeaderResponse, ApiError> {
        if !self.node.status().is_leader {
            return Err(EtcdError::NotLeader.into());
        }
        self.node.move_leader(NodeId(request.target_id)).await?;
        Ok(pb::MoveLeaderResponse {
            header: Some(response_header(self.node.header())),
        })
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
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_defragment().await)
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
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_move_leader(request.into_inner()).await)
    }

    async fn downgrade(
        &self,
        request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        not_implemented("Maintenance.Downgrade")
    }
}

fn alarm_member_to_proto(member: AlarmMember) -> pb::AlarmMember {
    pb::AlarmMember {
        member_id: member.member_id,
        alarm: member.alarm.number(),
    }
}
