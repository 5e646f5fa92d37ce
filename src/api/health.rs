//! `grpc.health.v1.Health`, as etcd registers it: every member reports SERVING, for the
//! empty service name and any other (COMPAT.md §2.10). NOT_SERVING during defragmentation
//! (`--experimental-stop-grpc-service-on-defrag`) comes with Defragment.

use tonic::codegen::tokio_stream::{self, StreamExt};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use braid_proto::grpc::health::v1::health_check_response::ServingStatus;
use braid_proto::grpc::health::v1::health_server::Health;
use braid_proto::grpc::health::v1::{HealthCheckRequest, HealthCheckResponse};

pub struct HealthService;

fn serving() -> HealthCheckResponse {
    HealthCheckResponse {
        status: ServingStatus::Serving as i32,
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, _request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(serving()))
    }

    type WatchStream = BoxStream<HealthCheckResponse>;

    /// The current status, then nothing: the status never changes yet, and the stream stays
    /// open like a real health watch until the client goes away.
    async fn watch(&self, _request: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let stream = tokio_stream::once(Ok(serving())).chain(tokio_stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }
}
