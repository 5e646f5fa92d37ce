//! The services braid does not serve yet: Cluster, Auth (`etcdserverpb`), Lock
//! (`v3lockpb`) and Election (`v3electionpb`). Every method, streaming ones included, answers
//! UNIMPLEMENTED with `braid: <Service>.<Method> is not implemented yet`, so a client sees
//! at once what is missing instead of a generic "unknown service".
//!
//! Note: `Cluster.MemberList` is what `etcdctl member list` and the Go client's endpoint
//! auto-sync call; until it exists, clients must be given every endpoint explicitly.

use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use braid_proto::etcdserverpb as pb;
use braid_proto::v3electionpb as electionpb;
use braid_proto::v3lockpb as lockpb;

use crate::api::errors::not_implemented;

/// Stands in for every service not written yet.
pub struct Unimplemented;

#[tonic::async_trait]
impl braid_proto::etcdserverpb::cluster_server::Cluster for Unimplemented {
    async fn member_add(
        &self,
        _request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        not_implemented("Cluster.MemberAdd")
    }

    async fn member_remove(
        &self,
        _request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        not_implemented("Cluster.MemberRemove")
    }

    async fn member_update(
        &self,
        _request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        not_implemented("Cluster.MemberUpdate")
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        not_implemented("Cluster.MemberList")
    }

    async fn member_promote(
        &self,
        _request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        not_implemented("Cluster.MemberPromote")
    }
}

#[tonic::async_trait]
impl braid_proto::etcdserverpb::auth_server::Auth for Unimplemented {
    async fn auth_enable(
        &self,
        _request: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        not_implemented("Auth.AuthEnable")
    }

    async fn auth_disable(
        &self,
        _request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        not_implemented("Auth.AuthDisable")
    }

    async fn auth_status(
        &self,
        _request: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        not_implemented("Auth.AuthStatus")
    }

    async fn authenticate(
        &self,
        _request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        not_implemented("Auth.Authenticate")
    }

    async fn user_add(
        &self,
        _request: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        not_implemented("Auth.UserAdd")
    }

    async fn user_get(
        &self,
        _request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        not_implemented("Auth.UserGet")
    }

    async fn user_list(
        &self,
        _request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        not_implemented("Auth.UserList")
    }

    async fn user_delete(
        &self,
        _request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        not_implemented("Auth.UserDelete")
    }

    async fn user_change_password(
        &self,
        _request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        not_implemented("Auth.UserChangePassword")
    }

    async fn user_grant_role(
        &self,
        _request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        not_implemented("Auth.UserGrantRole")
    }

    async fn user_revoke_role(
        &self,
        _request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        not_implemented("Auth.UserRevokeRole")
    }

    async fn role_add(
        &self,
        _request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        not_implemented("Auth.RoleAdd")
    }

    async fn role_get(
        &self,
        _request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        not_implemented("Auth.RoleGet")
    }

    async fn role_list(
        &self,
        _request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        not_implemented("Auth.RoleList")
    }

    async fn role_delete(
        &self,
        _request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        not_implemented("Auth.RoleDelete")
    }

    async fn role_grant_permission(
        &self,
        _request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        not_implemented("Auth.RoleGrantPermission")
    }

    async fn role_revoke_permission(
        &self,
        _request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        not_implemented("Auth.RoleRevokePermission")
    }
}

#[tonic::async_trait]
impl braid_proto::v3lockpb::lock_server::Lock for Unimplemented {
    async fn lock(&self, _request: Request<lockpb::LockRequest>) -> Result<Response<lockpb::LockResponse>, Status> {
        not_implemented("Lock.Lock")
    }

    async fn unlock(
        &self,
        _request: Request<lockpb::UnlockRequest>,
    ) -> Result<Response<lockpb::UnlockResponse>, Status> {
        not_implemented("Lock.Unlock")
    }
}

#[tonic::async_trait]
impl braid_proto::v3electionpb::election_server::Election for Unimplemented {
    async fn campaign(
        &self,
        _request: Request<electionpb::CampaignRequest>,
    ) -> Result<Response<electionpb::CampaignResponse>, Status> {
        not_implemented("Election.Campaign")
    }

    async fn proclaim(
        &self,
        _request: Request<electionpb::ProclaimRequest>,
    ) -> Result<Response<electionpb::ProclaimResponse>, Status> {
        not_implemented("Election.Proclaim")
    }

    async fn leader(
        &self,
        _request: Request<electionpb::LeaderRequest>,
    ) -> Result<Response<electionpb::LeaderResponse>, Status> {
        not_implemented("Election.Leader")
    }

    type ObserveStream = BoxStream<electionpb::LeaderResponse>;

    async fn observe(
        &self,
        _request: Request<electionpb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        not_implemented("Election.Observe")
    }

    async fn resign(
        &self,
        _request: Request<electionpb::ResignRequest>,
    ) -> Result<Response<electionpb::ResignResponse>, Status> {
        not_implemented("Election.Resign")
    }
}
