//! `etcdserverpb.Cluster` (COMPAT.md §2.5): MemberAdd, MemberRemove, MemberUpdate,
//! MemberList and MemberPromote over the node's member table (`server::membership`).
//!
//! Changes go through Raft and are answered once this member has applied them, with the
//! table as it stands then. MemberList answers from the applied table; with `linearizable`
//! it first waits for a ReadIndex barrier, as etcd does. MemberAdd, MemberRemove and
//! MemberPromote are decided by the leader (it alone knows the learner's log, which peers
//! it is connected to, and which change is in flight), so a follower forwards them to the
//! leader's client URL, as etcd forwards MemberPromote over the peer port. Learners refuse every Cluster RPC (etcd's interceptor
//! allows them only Status, serializable Range and Snapshot).

use std::future::Future;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use braid_proto::etcdserverpb as pb;
use braid_proto::etcdserverpb::cluster_client::ClusterClient;
use braid_proto::etcdserverpb::cluster_server::Cluster;

use crate::api::convert::response_header;
use crate::api::errors::{respond, ApiError, EtcdError};
use crate::api::{check_access, LearnerAccess};
use crate::mvcc::Backend;
use crate::raft::NodeId;
use crate::server::membership::{Member, MemberAnswer, MemberRequest, MembershipError};
use crate::server::{NodeHandle, ServerError};

/// How long a forwarded change may take (etcd's default request timeout).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(7);

pub struct ClusterService<B: Backend> {
    node: NodeHandle<B>,
}

impl<B: Backend> ClusterService<B> {
    pub fn new(node: NodeHandle<B>) -> Self {
        ClusterService { node }
    }

    async fn change(&self, request: MemberRequest) -> Result<MemberAnswer, ApiError> {
        Ok(self.node.change_membership(request).await?)
    }

    pub async fn serve_member_add(&self, request: pb::MemberAddRequest) -> Result<pb::MemberAddResponse, ApiError> {
        let change = MemberRequest::Add {
            peer_urls: request.peer_ur_ls.clone(),
            is_learner: request.is_learner,
        };
        match self.node.change_membership(change).await {
            Ok(answer) => Ok(pb::MemberAddResponse {
                header: Some(response_header(answer.header)),
                member: Some(member_to_proto(&answer.member)),
                members: members_to_proto(&answer.members),
            }),
            Err(ServerError::Membership(MembershipError::NotLeader { leader })) => {
                let mut answer = self
                    .forward(leader, |mut client| async move { client.member_add(request).await })
                    .await?;
                self.own_header(&mut answer.header);
                Ok(answer)
            }
            Err(error) => Err(error.into()),
        }
    }

    pub async fn serve_member_remove(
        &self,
        request: pb::MemberRemoveRequest,
    ) -> Result<pb::MemberRemoveResponse, ApiError> {
        match self
            .node
            .change_membership(MemberRequest::Remove { id: NodeId(request.id) })
            .await
        {
            Ok(answer) => Ok(pb::MemberRemoveResponse {
                header: Some(response_header(answer.header)),
                members: members_to_proto(&answer.members),
            }),
            Err(ServerError::Membership(MembershipError::NotLeader { leader })) => {
                let mut answer = self
                    .forward(leader, |mut client| async move { client.member_remove(request).await })
                    .await?;
                self.own_header(&mut answer.header);
                Ok(answer)
            }
            Err(error) => Err(error.into()),
        }
    }

    pub async fn serve_member_update(
        &self,
        request: pb::MemberUpdateRequest,
    ) -> Result<pb::MemberUpdateResponse, ApiError> {
        let answer = self
            .change(MemberRequest::Update {
                id: NodeId(request.id),
                peer_urls: request.peer_ur_ls,
            })
            .await?;
        Ok(pb::MemberUpdateResponse {
            header: Some(response_header(answer.header)),
            members: members_to_proto(&answer.members),
        })
    }

    pub async fn serve_member_list(&self, request: pb::MemberListRequest) -> Result<pb::MemberListResponse, ApiError> {
        if request.linearizable {
            self.node.linearizable_barrier().await?;
        }
        Ok(pb::MemberListResponse {
            header: Some(response_header(self.node.header())),
            members: members_to_proto(&self.node.members()),
        })
    }

    pub async fn serve_member_promote(
        &self,
        request: pb::MemberPromoteRequest,
    ) -> Result<pb::MemberPromoteResponse, ApiError> {
        match self
            .node
            .change_membership(MemberRequest::Promote { id: NodeId(request.id) })
            .await
        {
            Ok(answer) => Ok(pb::MemberPromoteResponse {
                header: Some(response_header(answer.header)),
                members: members_to_proto(&answer.members),
            }),
            Err(ServerError::Membership(MembershipError::NotLeader { leader })) => {
                let mut answer = self
                    .forward(leader, |mut client| async move { client.member_promote(request).await })
                    .await?;
                self.own_header(&mut answer.header);
                Ok(answer)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Sends a change to the leader through its first client URL and returns
    /// its answer once this member has applied the change too (a ReadIndex
    /// barrier), so this member's MemberList shows it right away, as etcd's does.
    async fn forward<T, Call, Answer>(&self, leader: NodeId, call: Call) -> Result<T, ApiError>
    where
        Call: FnOnce(ClusterClient<Channel>) -> Answer,
        Answer: Future<Output = Result<Response<T>, Status>>,
    {
        let url = self
            .node
            .members()
            .into_iter()
            .find(|member| member.id == leader)
            .and_then(|member| member.client_urls.into_iter().next())
            // The leader has not published its client URLs yet: the client retries.
            .ok_or(EtcdError::LeaderChanged)?;
        let forwarded = async {
            let client = ClusterClient::connect(url).await.map_err(|_| EtcdError::Unhealthy)?;
            call(client)
                .await
                .map(Response::into_inner)
                .map_err(|status| ApiError::Forwarded {
                    code: status.code(),
                    message: status.message().to_string(),
                })
        };
        let answer = tokio::time::timeout(FORWARD_TIMEOUT, forwarded)
            .await
            .map_err(|_| ApiError::Etcd(EtcdError::Timeout))??;
        // The change is committed; if the barrier fails, this member learns it a little later.
        let _ = self.node.linearizable_barrier().await;
        Ok(answer)
    }

    /// The header of a forwarded answer names this member, which answered.
    fn own_header(&self, header: &mut Option<pb::ResponseHeader>) {
        if let Some(header) = header {
            header.member_id = response_header(self.node.header()).member_id;
        }
    }
}

fn member_to_proto(member: &Member) -> pb::Member {
    pb::Member {
        id: member.id.0,
        name: member.name.clone(),
        peer_ur_ls: member.peer_urls.clone(),
        client_ur_ls: member.client_urls.clone(),
        is_learner: member.is_learner,
    }
}

fn members_to_proto(members: &[Member]) -> Vec<pb::Member> {
    members.iter().map(member_to_proto).collect()
}

#[tonic::async_trait]
impl<B: Backend> Cluster for ClusterService<B> {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_member_add(request.into_inner()).await)
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_member_remove(request.into_inner()).await)
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_member_update(request.into_inner()).await)
    }

    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_member_list(request.into_inner()).await)
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_member_promote(request.into_inner()).await)
    }
}
