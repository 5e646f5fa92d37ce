//! The one place errors become `tonic::Status`: etcd's gRPC code and exact message for every
//! error a client can see (COMPAT.md §3). The Go client turns statuses into typed errors by
//! matching the message byte for byte and retries only on `Unavailable`, so a changed
//! character or code breaks clients.
//!
//! Handlers return `ApiError`; every lower-level error (`MvccError`, `ServerError`,
//! `StoreError`, `BackendError`) converts into it with `?`, and it converts into a `Status`
//! at the gRPC boundary.

use std::fmt;

use tonic::{Code, Response, Status};

use crate::mvcc::{BackendError, MvccError, StoreError};
use crate::server::lessor::LeaseError;
use crate::server::membership::MembershipError;
use crate::server::ServerError;

/// Every error of etcd's `rpctypes/error.go` (v3.5.33, in its order), then the other
/// strings clients can see (COMPAT.md §3, second table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EtcdError {
    KeyNotProvided,
    KeyNotFound,
    ValueProvided,
    LeaseProvided,
    TooManyOperations,
    DuplicateKey,
    Compacted,
    FutureRevision,
    NoSpace,
    LeaseNotFound,
    LeaseExists,
    LeaseTtlTooLarge,
    WatchCanceled,
    MemberExists,
    PeerUrlExists,
    MemberNotEnoughStarted,
    MemberBadUrls,
    MemberNotFound,
    MemberNotLearner,
    LearnerNotReady,
    TooManyLearners,
    ClusterIdMismatch,
    RequestTooLarge,
    TooManyRequests,
    RootUserNotExist,
    RootRoleNotExist,
    UserAlreadyExists,
    UserEmpty,
    UserNotFound,
    RoleAlreadyExists,
    RoleNotFound,
    RoleEmpty,
    AuthFailed,
    PermissionNotGiven,
    PermissionDenied,
    RoleNotGranted,
    PermissionNotGranted,
    AuthNotEnabled,
    InvalidAuthToken,
    InvalidAuthManagement,
    AuthOldRevision,
    NoLeader,
    NotLeader,
    LeaderChanged,
    NotCapable,
    Stopped,
    Timeout,
    TimeoutDueToLeaderFail,
    TimeoutDueToConnectionLost,
    TimeoutWaitAppliedIndex,
    Unhealthy,
    Corrupt,
    NotSupportedForLearner,
    BadLeaderTransferee,
    ClusterVersionUnavailable,
    WrongDowngradeVersionFormat,
    InvalidDowngradeTargetVersion,
    DowngradeInProcess,
    NoInflightDowngrade,
    Canceled,
    DeadlineExceeded,
    // Not in error.go, but seen by clients.
    LeaderTransferTimeout,
    ElectionNotLeader,
    ElectionNoLeader,
    ElectionLeaderMissing,
    AuthPasswordForNoPasswordUser,
}

impl EtcdError {
    /// Every variant, in declaration order.
    pub const ALL: [EtcdError; 66] = [
        EtcdError::KeyNotProvided,
        EtcdError::KeyNotFound,
        EtcdError::ValueProvided,
        EtcdError::LeaseProvided,
        EtcdError::TooManyOperations,
        EtcdError::DuplicateKey,
        EtcdError::Compacted,
        EtcdError::FutureRevision,
        EtcdError::NoSpace,
        EtcdError::LeaseNotFound,
        EtcdError::LeaseExists,
        EtcdError::LeaseTtlTooLarge,
        EtcdError::WatchCanceled,
        EtcdError::MemberExists,
        EtcdError::PeerUrlExists,
        EtcdError::MemberNotEnoughStarted,
        EtcdError::MemberBadUrls,
        EtcdError::MemberNotFound,
        EtcdError::MemberNotLearner,
        EtcdError::LearnerNotReady,
        EtcdError::TooManyLearners,
        EtcdError::ClusterIdMismatch,
        EtcdError::RequestTooLarge,
        EtcdError::TooManyRequests,
        EtcdError::RootUserNotExist,
        EtcdError::RootRoleNotExist,
        EtcdError::UserAlreadyExists,
        EtcdError::UserEmpty,
        EtcdError::UserNotFound,
        EtcdError::RoleAlreadyExists,
        EtcdError::RoleNotFound,
        EtcdError::RoleEmpty,
        EtcdError::AuthFailed,
        EtcdError::PermissionNotGiven,
        EtcdError::PermissionDenied,
        EtcdError::RoleNotGranted,
        EtcdError::PermissionNotGranted,
        EtcdError::AuthNotEnabled,
        EtcdError::InvalidAuthToken,
        EtcdError::InvalidAuthManagement,
        EtcdError::AuthOldRevision,
        EtcdError::NoLeader,
        EtcdError::NotLeader,
        EtcdError::LeaderChanged,
        EtcdError::NotCapable,
        EtcdError::Stopped,
        EtcdError::Timeout,
        EtcdError::TimeoutDueToLeaderFail,
        EtcdError::TimeoutDueToConnectionLost,
        EtcdError::TimeoutWaitAppliedIndex,
        EtcdError::Unhealthy,
        EtcdError::Corrupt,
        EtcdError::NotSupportedForLearner,
        EtcdError::BadLeaderTransferee,
        EtcdError::ClusterVersionUnavailable,
        EtcdError::WrongDowngradeVersionFormat,
        EtcdError::InvalidDowngradeTargetVersion,
        EtcdError::DowngradeInProcess,
        EtcdError::NoInflightDowngrade,
        EtcdError::Canceled,
        EtcdError::DeadlineExceeded,
        EtcdError::LeaderTransferTimeout,
        EtcdError::ElectionNotLeader,
        EtcdError::ElectionNoLeader,
        EtcdError::ElectionLeaderMissing,
        EtcdError::AuthPasswordForNoPasswordUser,
    ];

    /// etcd's gRPC code and message: the table of COMPAT.md §3.
    pub fn code_and_message(self) -> (Code, &'static str) {
        use Code::{
            Cancelled, DataLoss, DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound, OutOfRange,
            PermissionDenied, ResourceExhausted, Unauthenticated, Unavailable, Unknown,
        };
        match self {
            EtcdError::KeyNotProvided => (InvalidArgument, "etcdserver: key is not provided"),
            EtcdError::KeyNotFound => (InvalidArgument, "etcdserver: key not found"),
            EtcdError::ValueProvided => (InvalidArgument, "etcdserver: value is provided"),
            EtcdError::LeaseProvided => (InvalidArgument, "etcdserver: lease is provided"),
            EtcdError::TooManyOperations => (InvalidArgument, "etcdserver: too many operations in txn request"),
            EtcdError::DuplicateKey => (InvalidArgument, "etcdserver: duplicate key given in txn request"),
            EtcdError::Compacted => (OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            EtcdError::FutureRevision => (OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            EtcdError::NoSpace => (ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
            EtcdError::LeaseNotFound => (NotFound, "etcdserver: requested lease not found"),
            EtcdError::LeaseExists => (FailedPrecondition, "etcdserver: lease already exists"),
            EtcdError::LeaseTtlTooLarge => (OutOfRange, "etcdserver: too large lease TTL"),
            EtcdError::WatchCanceled => (Cancelled, "etcdserver: watch canceled"),
            EtcdError::MemberExists => (FailedPrecondition, "etcdserver: member ID already exist"),
            EtcdError::PeerUrlExists => (FailedPrecondition, "etcdserver: Peer URLs already exists"),
            EtcdError::MemberNotEnoughStarted => (
                FailedPrecondition,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            EtcdError::MemberBadUrls => (InvalidArgument, "etcdserver: given member URLs are invalid"),
            EtcdError::MemberNotFound => (NotFound, "etcdserver: member not found"),
            EtcdError::MemberNotLearner => (FailedPrecondition, "etcdserver: can only promote a learner member"),
            EtcdError::LearnerNotReady => (
                FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            EtcdError::TooManyLearners => (FailedPrecondition, "etcdserver: too many learner members in cluster"),
            EtcdError::ClusterIdMismatch => (FailedPrecondition, "etcdserver: cluster ID mismatch"),
            EtcdError::RequestTooLarge => (InvalidArgument, "etcdserver: request is too large"),
            EtcdError::TooManyRequests => (ResourceExhausted, "etcdserver: too many requests"),
            EtcdError::RootUserNotExist => (FailedPrecondition, "etcdserver: root user does not exist"),
            EtcdError::RootRoleNotExist => (FailedPrecondition, "etcdserver: root user does not have root role"),
            EtcdError::UserAlreadyExists => (FailedPrecondition, "etcdserver: user name already exists"),
            EtcdError::UserEmpty => (InvalidArgument, "etcdserver: user name is empty"),
            EtcdError::UserNotFound => (FailedPrecondition, "etcdserver: user name not found"),
            EtcdError::RoleAlreadyExists => (FailedPrecondition, "etcdserver: role name already exists"),
            EtcdError::RoleNotFound => (FailedPrecondition, "etcdserver: role name not found"),
            EtcdError::RoleEmpty => (InvalidArgument, "etcdserver: role name is empty"),
            EtcdError::AuthFailed => (
                InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            EtcdError::PermissionNotGiven => (InvalidArgument, "etcdserver: permission not given"),
            EtcdError::PermissionDenied => (PermissionDenied, "etcdserver: permission denied"),
            EtcdError::RoleNotGranted => (FailedPrecondition, "etcdserver: role is not granted to the user"),
            EtcdError::PermissionNotGranted => {
                (FailedPrecondition, "etcdserver: permission is not granted to the role")
            }
            EtcdError::AuthNotEnabled => (FailedPrecondition, "etcdserver: authentication is not enabled"),
            EtcdError::InvalidAuthToken => (Unauthenticated, "etcdserver: invalid auth token"),
            EtcdError::InvalidAuthManagement => (InvalidArgument, "etcdserver: invalid auth management"),
            EtcdError::AuthOldRevision => (InvalidArgument, "etcdserver: revision of auth store is old"),
            EtcdError::NoLeader => (Unavailable, "etcdserver: no leader"),
            EtcdError::NotLeader => (FailedPrecondition, "etcdserver: not leader"),
            EtcdError::LeaderChanged => (Unavailable, "etcdserver: leader changed"),
            EtcdError::NotCapable => (Unavailable, "etcdserver: not capable"),
            EtcdError::Stopped => (Unavailable, "etcdserver: server stopped"),
            EtcdError::Timeout => (Unavailable, "etcdserver: request timed out"),
            EtcdError::TimeoutDueToLeaderFail => (
                Unavailable,
                "etcdserver: request timed out, possibly due to previous leader failure",
            ),
            EtcdError::TimeoutDueToConnectionLost => (
                Unavailable,
                "etcdserver: request timed out, possibly due to connection lost",
            ),
            EtcdError::TimeoutWaitAppliedIndex => (
                Unavailable,
                "etcdserver: request timed out, waiting for the applied index took too long",
            ),
            EtcdError::Unhealthy => (Unavailable, "etcdserver: unhealthy cluster"),
            EtcdError::Corrupt => (DataLoss, "etcdserver: corrupt cluster"),
            EtcdError::NotSupportedForLearner => (Unavailable, "etcdserver: rpc not supported for learner"),
            EtcdError::BadLeaderTransferee => (FailedPrecondition, "etcdserver: bad leader transferee"),
            EtcdError::ClusterVersionUnavailable => {
                (Unavailable, "etcdserver: cluster version not found during downgrade")
            }
            EtcdError::WrongDowngradeVersionFormat => {
                (InvalidArgument, "etcdserver: wrong downgrade target version format")
            }
            EtcdError::InvalidDowngradeTargetVersion => {
                (InvalidArgument, "etcdserver: invalid downgrade target version")
            }
            EtcdError::DowngradeInProcess => (
                FailedPrecondition,
                "etcdserver: cluster has a downgrade job in progress",
            ),
            EtcdError::NoInflightDowngrade => (FailedPrecondition, "etcdserver: no inflight downgrade job"),
            EtcdError::Canceled => (Cancelled, "etcdserver: request canceled"),
            EtcdError::DeadlineExceeded => (DeadlineExceeded, "etcdserver: context deadline exceeded"),
            EtcdError::LeaderTransferTimeout => {
                (Unknown, "etcdserver: request timed out, leader transfer took too long")
            }
            EtcdError::ElectionNotLeader => (Unknown, "election: not leader"),
            EtcdError::ElectionNoLeader => (Unknown, "election: no leader"),
            EtcdError::ElectionLeaderMissing => (Unknown, "\"leader\" field must be provided"),
            EtcdError::AuthPasswordForNoPasswordUser => (
                Unknown,
                "auth: authentication failed, password was given for no password user",
            ),
        }
    }

    pub fn code(self) -> Code {
        self.code_and_message().0
    }

    pub fn message(self) -> &'static str {
        self.code_and_message().1
    }
}

impl fmt::Display for EtcdError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.message())
    }
}

/// Why an API request failed; converts into the `Status` the client sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// One of etcd's errors, with its code and text.
    Etcd(EtcdError),
    /// mvcc's `mvcc: watcher range is empty`. etcd only sends it as a watch `cancel_reason`;
    /// should it ever reach a status it is InvalidArgument with the same text.
    WatcherRangeEmpty,
    /// A proto enum field holds a number the enum does not define (etcd's Go code would
    /// silently treat it as some default or panic; braid refuses it). InvalidArgument.
    UnknownEnumValue { field: &'static str, value: i32 },
    /// An RPC braid does not serve yet, named `Service.Method`. Unimplemented.
    Unimplemented { rpc: &'static str },
    /// The storage failed and the member is stopping (fail-stop, DESIGN invariant 8). The
    /// client sees `etcdserver: server stopped` (Unavailable) so it fails over to another
    /// member; the cause belongs in the server's log, not in a client-matched message.
    StorageFailure(String),
    /// Another member's answer to a request this member forwarded (MemberPromote to the
    /// leader), passed on unchanged.
    Forwarded { code: Code, message: String },
}

impl ApiError {
    pub fn code(&self) -> Code {
        match self {
            ApiError::Etcd(error) => error.code(),
            ApiError::WatcherRangeEmpty | ApiError::UnknownEnumValue { .. } => Code::InvalidArgument,
            ApiError::Unimplemented { .. } => Code::Unimplemented,
            ApiError::StorageFailure(_) => EtcdError::Stopped.code(),
            ApiError::Forwarded { code, .. } => *code,
        }
    }

    /// The message the client sees.
    pub fn message(&self) -> String {
        match self {
            ApiError::Etcd(error) => error.message().to_string(),
            ApiError::WatcherRangeEmpty => MvccError::WatcherRangeEmpty.message().to_string(),
            ApiError::UnknownEnumValue { field, value } => {
                format!("braid: {field} has no enum value {value}")
            }
            ApiError::Unimplemented { rpc } => format!("braid: {rpc} is not implemented yet"),
            ApiError::StorageFailure(_) => EtcdError::Stopped.message().to_string(),
            ApiError::Forwarded { message, .. } => message.clone(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::StorageFailure(cause) => write!(formatter, "{} (storage failure: {cause})", self.message()),
            _ => formatter.write_str(&self.message()),
        }
    }
}

impl std::error::Error for ApiError {}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        Status::new(error.code(), error.message())
    }
}

/// A handler's result as tonic wants it.
pub fn respond<T>(result: Result<T, ApiError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

/// The answer of an RPC braid does not serve yet; `rpc` is `Service.Method`.
pub fn not_implemented<T>(rpc: &'static str) -> Result<Response<T>, Status> {
    Err(ApiError::Unimplemented { rpc }.into())
}

impl From<EtcdError> for ApiError {
    fn from(error: EtcdError) -> ApiError {
        ApiError::Etcd(error)
    }
}

impl From<MvccError> for ApiError {
    fn from(error: MvccError) -> ApiError {
        let etcd = match error {
            MvccError::Compacted => EtcdError::Compacted,
            MvccError::FutureRevision => EtcdError::FutureRevision,
            MvccError::KeyNotProvided => EtcdError::KeyNotProvided,
            MvccError::KeyNotFound => EtcdError::KeyNotFound,
            MvccError::ValueProvided => EtcdError::ValueProvided,
            MvccError::LeaseProvided => EtcdError::LeaseProvided,
            MvccError::TooManyOperations => EtcdError::TooManyOperations,
            MvccError::DuplicateKey => EtcdError::DuplicateKey,
            MvccError::LeaseNotFound => EtcdError::LeaseNotFound,
            MvccError::WatcherRangeEmpty => return ApiError::WatcherRangeEmpty,
        };
        ApiError::Etcd(etcd)
    }
}

impl From<ServerError> for ApiError {
    fn from(error: ServerError) -> ApiError {
        let etcd = match error {
            ServerError::NoLeader => EtcdError::NoLeader,
            ServerError::Timeout => EtcdError::Timeout,
            ServerError::LeaderChanged => EtcdError::LeaderChanged,
            ServerError::Stopped => EtcdError::Stopped,
            ServerError::TooLarge => EtcdError::RequestTooLarge,
            ServerError::TooManyRequests => EtcdError::TooManyRequests,
            ServerError::NoSpace => EtcdError::NoSpace,
            ServerError::Corrupt => EtcdError::Corrupt,
            ServerError::NotLeader => EtcdError::NotLeader,
            ServerError::BadLeaderTransferee => EtcdError::BadLeaderTransferee,
            ServerError::LeaderTransferTimeout => EtcdError::LeaderTransferTimeout,
            ServerError::Mvcc(error) => return error.into(),
            ServerError::Membership(error) => return error.into(),
            ServerError::Lease(LeaseError::NotFound) => EtcdError::LeaseNotFound,
            ServerError::Lease(LeaseError::Exists) => EtcdError::LeaseExists,
            ServerError::Lease(LeaseError::TtlTooLarge) => EtcdError::LeaseTtlTooLarge,
            ServerError::Storage(cause) => return ApiError::StorageFailure(cause),
        };
        ApiError::Etcd(etcd)
    }
}

impl From<MembershipError> for ApiError {
    fn from(error: MembershipError) -> ApiError {
        ApiError::Etcd(match error {
            MembershipError::MemberExists => EtcdError::MemberExists,
            MembershipError::PeerUrlExists => EtcdError::PeerUrlExists,
            MembershipError::NotEnoughStarted => EtcdError::MemberNotEnoughStarted,
            MembershipError::BadUrls => EtcdError::MemberBadUrls,
            MembershipError::NotFound => EtcdError::MemberNotFound,
            MembershipError::NotLearner => EtcdError::MemberNotLearner,
            MembershipError::LearnerNotReady => EtcdError::LearnerNotReady,
            MembershipError::TooManyLearners => EtcdError::TooManyLearners,
            MembershipError::Unhealthy => EtcdError::Unhealthy,
            MembershipError::NotLeader { .. } => EtcdError::NotLeader,
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Request(error) => error.into(),
            StoreError::Backend(error) => error.into(),
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> ApiError {
        ApiError::StorageFailure(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::raft::NodeId;

    fn status_of(error: impl Into<ApiError>) -> (Code, String) {
        let status = Status::from(error.into());
        (status.code(), status.message().to_string())
    }

    /// COMPAT.md §3 transcribed independently of the match above: (code, message).
    const COMPAT_TABLE: [(Code, &str); 66] = [
        (Code::InvalidArgument, "etcdserver: key is not provided"),
        (Code::InvalidArgument, "etcdserver: key not found"),
        (Code::InvalidArgument, "etcdserver: value is provided"),
        (Code::InvalidArgument, "etcdserver: lease is provided"),
        (Code::InvalidArgument, "etcdserver: too many operations in txn request"),
        (Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
        (Code::NotFound, "etcdserver: requested lease not found"),
        (Code::FailedPrecondition, "etcdserver: lease already exists"),
        (Code::OutOfRange, "etcdserver: too large lease TTL"),
        (Code::Cancelled, "etcdserver: watch canceled"),
        (Code::FailedPrecondition, "etcdserver: member ID already exist"),
        (Code::FailedPrecondition, "etcdserver: Peer URLs already exists"),
        (
            Code::FailedPrecondition,
            "etcdserver: re-configuration failed due to not enough started members",
        ),
        (Code::InvalidArgument, "etcdserver: given member URLs are invalid"),
        (Code::NotFound, "etcdserver: member not found"),
        (
            Code::FailedPrecondition,
            "etcdserver: can only promote a learner member",
        ),
        (
            Code::FailedPrecondition,
            "etcdserver: can only promote a learner member which is in sync with leader",
        ),
        (
            Code::FailedPrecondition,
            "etcdserver: too many learner members in cluster",
        ),
        (Code::FailedPrecondition, "etcdserver: cluster ID mismatch"),
        (Code::InvalidArgument, "etcdserver: request is too large"),
        (Code::ResourceExhausted, "etcdserver: too many requests"),
        (Code::FailedPrecondition, "etcdserver: root user does not exist"),
        (
            Code::FailedPrecondition,
            "etcdserver: root user does not have root role",
        ),
        (Code::FailedPrecondition, "etcdserver: user name already exists"),
        (Code::InvalidArgument, "etcdserver: user name is empty"),
        (Code::FailedPrecondition, "etcdserver: user name not found"),
        (Code::FailedPrecondition, "etcdserver: role name already exists"),
        (Code::FailedPrecondition, "etcdserver: role name not found"),
        (Code::InvalidArgument, "etcdserver: role name is empty"),
        (
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        ),
        (Code::InvalidArgument, "etcdserver: permission not given"),
        (Code::PermissionDenied, "etcdserver: permission denied"),
        (Code::FailedPrecondition, "etcdserver: role is not granted to the user"),
        (
            Code::FailedPrecondition,
            "etcdserver: permission is not granted to the role",
        ),
        (Code::FailedPrecondition, "etcdserver: authentication is not enabled"),
        (Code::Unauthenticated, "etcdserver: invalid auth token"),
        (Code::InvalidArgument, "etcdserver: invalid auth management"),
        (Code::InvalidArgument, "etcdserver: revision of auth store is old"),
        (Code::Unavailable, "etcdserver: no leader"),
        (Code::FailedPrecondition, "etcdserver: not leader"),
        (Code::Unavailable, "etcdserver: leader changed"),
        (Code::Unavailable, "etcdserver: not capable"),
        (Code::Unavailable, "etcdserver: server stopped"),
        (Code::Unavailable, "etcdserver: request timed out"),
        (
            Code::Unavailable,
            "etcdserver: request timed out, possibly due to previous leader failure",
        ),
        (
            Code::Unavailable,
            "etcdserver: request timed out, possibly due to connection lost",
        ),
        (
            Code::Unavailable,
            "etcdserver: request timed out, waiting for the applied index took too long",
        ),
        (Code::Unavailable, "etcdserver: unhealthy cluster"),
        (Code::DataLoss, "etcdserver: corrupt cluster"),
        (Code::Unavailable, "etcdserver: rpc not supported for learner"),
        (Code::FailedPrecondition, "etcdserver: bad leader transferee"),
        (
            Code::Unavailable,
            "etcdserver: cluster version not found during downgrade",
        ),
        (
            Code::InvalidArgument,
            "etcdserver: wrong downgrade target version format",
        ),
        (Code::InvalidArgument, "etcdserver: invalid downgrade target version"),
        (
            Code::FailedPrecondition,
            "etcdserver: cluster has a downgrade job in progress",
        ),
        (Code::FailedPrecondition, "etcdserver: no inflight downgrade job"),
        (Code::Cancelled, "etcdserver: request canceled"),
        (Code::DeadlineExceeded, "etcdserver: context deadline exceeded"),
        (
            Code::Unknown,
            "etcdserver: request timed out, leader transfer took too long",
        ),
        (Code::Unknown, "election: not leader"),
        (Code::Unknown, "election: no leader"),
        (Code::Unknown, "\"leader\" field must be provided"),
        (
            Code::Unknown,
            "auth: authentication failed, password was given for no password user",
        ),
    ];

    #[test]
    fn every_etcd_error_has_the_compat_code_and_text() {
        for (error, (code, message)) in EtcdError::ALL.into_iter().zip(COMPAT_TABLE) {
            assert_eq!(status_of(error), (code, message.to_string()), "{error:?}");
        }
        let distinct: BTreeSet<&str> = EtcdError::ALL.iter().map(|error| error.message()).collect();
        assert_eq!(distinct.len(), EtcdError::ALL.len(), "ALL lists a variant twice");
    }

    #[test]
    fn every_mvcc_error_keeps_its_text_and_gets_its_code() {
        let cases = [
            (MvccError::Compacted, Code::OutOfRange),
            (MvccError::FutureRevision, Code::OutOfRange),
            (MvccError::KeyNotProvided, Code::InvalidArgument),
            (MvccError::KeyNotFound, Code::InvalidArgument),
            (MvccError::ValueProvided, Code::InvalidArgument),
            (MvccError::LeaseProvided, Code::InvalidArgument),
            (MvccError::TooManyOperations, Code::InvalidArgument),
            (MvccError::DuplicateKey, Code::InvalidArgument),
            (MvccError::LeaseNotFound, Code::NotFound),
            (MvccError::WatcherRangeEmpty, Code::InvalidArgument),
        ];
        for (error, code) in cases {
            assert_eq!(status_of(error), (code, error.message().to_string()), "{error:?}");
            // The same through the server and through a read.
            assert_eq!(status_of(ServerError::Mvcc(error)), status_of(error));
            assert_eq!(status_of(StoreError::Request(error)), status_of(error));
        }
    }

    #[test]
    fn every_server_error_gets_etcds_code_and_text() {
        let cases = [
            (ServerError::NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (ServerError::Timeout, Code::Unavailable, "etcdserver: request timed out"),
            (
                ServerError::LeaderChanged,
                Code::Unavailable,
                "etcdserver: leader changed",
            ),
            (ServerError::Stopped, Code::Unavailable, "etcdserver: server stopped"),
            (
                ServerError::TooLarge,
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                ServerError::TooManyRequests,
                Code::ResourceExhausted,
                "etcdserver: too many requests",
            ),
            (
                ServerError::Mvcc(MvccError::Compacted),
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                ServerError::NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (ServerError::Corrupt, Code::DataLoss, "etcdserver: corrupt cluster"),
            (
                ServerError::NotLeader,
                Code::FailedPrecondition,
                "etcdserver: not leader",
            ),
            (
                ServerError::BadLeaderTransferee,
                Code::FailedPrecondition,
                "etcdserver: bad leader transferee",
            ),
            (
                ServerError::LeaderTransferTimeout,
                Code::Unknown,
                "etcdserver: request timed out, leader transfer took too long",
            ),
            (
                ServerError::Storage("fsync failed".to_string()),
                Code::Unavailable,
                "etcdserver: server stopped",
            ),
            (
                ServerError::Membership(MembershipError::LearnerNotReady),
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (
                ServerError::Lease(LeaseError::NotFound),
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                ServerError::Lease(LeaseError::Exists),
                Code::FailedPrecondition,
                "etcdserver: lease already exists",
            ),
            (
                ServerError::Lease(LeaseError::TtlTooLarge),
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
        ];
        for (error, code, message) in cases {
            // Except for storage failures, the server's own text is already etcd's.
            if !matches!(error, ServerError::Storage(_)) {
                assert_eq!(error.to_string(), message);
            }
            assert_eq!(status_of(error.clone()), (code, message.to_string()), "{error:?}");
        }
    }

    #[test]
    fn every_membership_error_keeps_its_text_and_gets_etcds_code() {
        let errors = [
            MembershipError::MemberExists,
            MembershipError::PeerUrlExists,
            MembershipError::NotEnoughStarted,
            MembershipError::BadUrls,
            MembershipError::NotFound,
            MembershipError::NotLearner,
            MembershipError::LearnerNotReady,
            MembershipError::TooManyLearners,
            MembershipError::Unhealthy,
            MembershipError::NotLeader { leader: NodeId(3) },
        ];
        for error in errors {
            let (code, message) = status_of(error);
            assert_eq!(message, error.to_string(), "{error:?}");
            let listed = COMPAT_TABLE.iter().find(|(_, text)| *text == message);
            assert_eq!(listed.map(|(code, _)| *code), Some(code), "{error:?}");
        }
    }

    #[test]
    fn storage_failures_hide_the_cause_from_clients_but_not_from_logs() {
        let error = ApiError::from(BackendError::new("page 7 checksum mismatch"));
        assert_eq!(
            status_of(error.clone()),
            (Code::Unavailable, "etcdserver: server stopped".to_string())
        );
        assert!(error.to_string().contains("page 7 checksum mismatch"), "{error}");
        let store = ApiError::from(StoreError::Backend(BackendError::new("boom")));
        assert_eq!(status_of(store).0, Code::Unavailable);
    }

    #[test]
    fn braid_own_errors_are_clear() {
        let unknown = ApiError::UnknownEnumValue {
            field: "RangeRequest.sort_order",
            value: 9,
        };
        assert_eq!(
            status_of(unknown),
            (
                Code::InvalidArgument,
                "braid: RangeRequest.sort_order has no enum value 9".to_string()
            )
        );
        let missing = ApiError::Unimplemented {
            rpc: "Maintenance.Defragment",
        };
        assert_eq!(
            status_of(missing),
            (
                Code::Unimplemented,
                "braid: Maintenance.Defragment is not implemented yet".to_string()
            )
        );
    }
}
