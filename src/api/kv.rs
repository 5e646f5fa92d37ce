//! `etcdserverpb.KV` (COMPAT.md §2.1–§2.2) over a `NodeHandle`, following etcd's request
//! path: interceptor checks (learner, `hasleader`), stateless validation, then
//! - reads (Range, and Txns without puts or deletes) from the local store, after a
//!   `linearizable_barrier` unless the client asked for a serializable read;
//! - writes (Put, DeleteRange, writing Txn, Compact): refused when their encoding exceeds
//!   `--max-request-bytes`, a Put or a Txn with puts also while NOSPACE is active or when it
//!   would exceed the quota (`NodeHandle::check_space`), otherwise replicated through
//!   `NodeHandle::write`.
//!
//! The `serve_*` methods hold the logic without gRPC wrapping, for the JSON gateway.

use prost::Message;
use tonic::{Request, Response, Status};

use braid_proto::etcdserverpb as pb;
use braid_proto::etcdserverpb::kv_server::Kv;

use crate::api::convert;
use crate::api::errors::{respond, ApiError, EtcdError};
use crate::api::{check_access, ApiLimits, LearnerAccess};
use crate::mvcc::{
    is_read_only, validate_delete_range, validate_put, validate_range, validate_txn, Backend, Revision, WriteRequest,
    WriteResponse,
};
use crate::server::{Header, NodeHandle};

pub struct KvService<B: Backend> {
    node: NodeHandle<B>,
    limits: ApiLimits,
}

impl<B: Backend> KvService<B> {
    pub fn new(node: NodeHandle<B>, limits: ApiLimits) -> Self {
        KvService { node, limits }
    }

    pub async fn serve_range(&self, request: pb::RangeRequest) -> Result<pb::RangeResponse, ApiError> {
        let serializable = request.serializable;
        let range = convert::range_request_from_proto(request)?;
        validate_range(&range)?;
        if !serializable {
            self.node.linearizable_barrier().await?;
        }
        let result = self.node.store().range(&range)?;
        let header = self.read_header(result.revision);
        Ok(convert::range_response(result, header))
    }

    pub async fn serve_put(&self, request: pb::PutRequest) -> Result<pb::PutResponse, ApiError> {
        let request_bytes = request.encoded_len();
        let put = convert::put_request_from_proto(request);
        validate_put(&put)?;
        self.check_request_bytes(request_bytes)?;
        let put = WriteRequest::Put(put);
        self.node.check_space(&put).await?;
        match self.node.write(put).await? {
            (WriteResponse::Put(result), header) => {
                let header = write_header(header, result.revision);
                Ok(convert::put_response(result, header))
            }
            (other, _) => unexpected_response("Put", other),
        }
    }

    pub async fn serve_delete_range(
        &self,
        request: pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse, ApiError> {
        let request_bytes = request.encoded_len();
        let delete = convert::delete_range_request_from_proto(request);
        validate_delete_range(&delete)?;
        self.check_request_bytes(request_bytes)?;
        match self.node.write(WriteRequest::DeleteRange(delete)).await? {
            (WriteResponse::DeleteRange(result), header) => {
                let header = write_header(header, result.revision);
                Ok(convert::delete_range_response(result, header))
            }
            (other, _) => unexpected_response("DeleteRange", other),
        }
    }

    /// A txn that cannot write is served like a read, with no Raft entry and no revision
    /// (etcd's `Txn` with `isTxnReadonly`); it skips ReadIndex only when every op is a
    /// serializable range.
    pub async fn serve_txn(&self, request: pb::TxnRequest) -> Result<pb::TxnResponse, ApiError> {
        let serializable = convert::txn_is_serializable(&request);
        let request_bytes = request.encoded_len();
        let txn = convert::txn_request_from_proto(request)?;
        validate_txn(&txn, self.limits.max_txn_ops)?;
        if is_read_only(&txn) {
            if !serializable {
                self.node.linearizable_barrier().await?;
            }
            let result = self.node.store().read_txn(&txn)?;
            let header = self.read_header(result.revision);
            return Ok(convert::txn_response(result, header));
        }
        self.check_request_bytes(request_bytes)?;
        let txn = WriteRequest::Txn(txn);
        self.node.check_space(&txn).await?;
        match self.node.write(txn).await? {
            (WriteResponse::Txn(result), header) => {
                let header = write_header(header, result.revision);
                Ok(convert::txn_response(result, header))
            }
            (other, _) => unexpected_response("Txn", other),
        }
    }

    /// With `physical`, answers only once the compacted history is gone from this member's
    /// backend (etcd waits for its compaction to finish and force-commits).
    pub async fn serve_compact(&self, request: pb::CompactionRequest) -> Result<pb::CompactionResponse, ApiError> {
        let request_bytes = request.encoded_len();
        let physical = request.physical;
        let compact = convert::compact_request_from_proto(&request);
        self.check_request_bytes(request_bytes)?;
        let (result, header) = match self.node.write(WriteRequest::Compact(compact)).await? {
            (WriteResponse::Compact(result), header) => (result, header),
            (other, _) => unexpected_response("Compact", other),
        };
        if physical {
            self.node.store().finish_compaction().await?;
        }
        Ok(convert::compaction_response(write_header(header, result.revision)))
    }

    /// etcd measures the proposal it is about to replicate; braid measures the client's
    /// request message, which is that proposal minus a small fixed envelope.
    fn check_request_bytes(&self, request_bytes: usize) -> Result<(), ApiError> {
        if request_bytes > self.node.max_request_bytes() {
            return Err(EtcdError::RequestTooLarge.into());
        }
        Ok(())
    }

    /// The member's header with the revision the read saw (etcd: the store's current
    /// revision, also for historical reads).
    fn read_header(&self, revision: Revision) -> pb::ResponseHeader {
        convert::response_header(Header {
            revision: revision.0,
            ..self.node.header()
        })
    }
}

/// The header of a write: the node's, with the revision the write produced (or the current
/// one for a write with no effect), as etcd's applier sets it.
fn write_header(header: Header, revision: Revision) -> pb::ResponseHeader {
    convert::response_header(Header {
        revision: revision.0,
        ..header
    })
}

/// The node answered a write with the result of another kind of request: a bug in the node
/// loop, not something a client can cause.
fn unexpected_response(request: &str, response: WriteResponse) -> ! {
    panic!("the node answered a {request} request with {response:?}")
}

#[tonic::async_trait]
impl<B: Backend> Kv for KvService<B> {
    async fn range(&self, request: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let learner_access = if request.get_ref().serializable {
            LearnerAccess::Allowed
        } else {
            LearnerAccess::Refused
        };
        check_access(&self.node, request.metadata(), learner_access)?;
        respond(self.serve_range(request.into_inner()).await)
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_put(request.into_inner()).await)
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_delete_range(request.into_inner()).await)
    }

    async fn txn(&self, request: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_txn(request.into_inner()).await)
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        respond(self.serve_compact(request.into_inner()).await)
    }
}
