//! Maintenance.Snapshot's stream (COMPAT.md §4.2): the backend's point-in-time image in
//! chunks of at most 32 KiB, each saying how many payload bytes are still to come, then one
//! message whose blob is the SHA-256 of the whole payload. etcd's tools accept a saved file
//! only if its size is 32 more than a multiple of 512 (the payload, then the digest); braid's
//! payload is whole B+tree pages (a power of two of at least 512 bytes), so it is aligned
//! without padding, which `SnapshotChunks` checks before sending anything.

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tonic::codegen::BoxStream;
use tonic::Status;

use braid_proto::etcdserverpb as pb;

use crate::api::errors::ApiError;
use crate::mvcc::BackendImage;

/// The largest blob of one message (etcd's `snapshotSendBufferSize`).
pub const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;

/// etcd's restore checks `size % 512 == 32`: the payload is a multiple of this.
pub const SNAPSHOT_ALIGNMENT_BYTES: u64 = 512;

/// The digest etcd appends after the payload.
pub const SNAPSHOT_DIGEST_BYTES: usize = 32;

/// Turns the image into the response messages, in order.
pub struct SnapshotChunks {
    image: BackendImage,
    header: pb::ResponseHeader,
    /// Bytes taken from the image but not sent yet.
    pending: Bytes,
    sent_bytes: u64,
    digest: Sha256,
    finished: bool,
}

impl SnapshotChunks {
    pub fn new(image: BackendImage, header: pb::ResponseHeader) -> Result<SnapshotChunks, ApiError> {
        if image.total_bytes % SNAPSHOT_ALIGNMENT_BYTES != 0 {
            return Err(ApiError::StorageFailure(format!(
                "snapshot image of {} bytes is not a multiple of {SNAPSHOT_ALIGNMENT_BYTES}",
                image.total_bytes
            )));
        }
        Ok(SnapshotChunks {
            image,
            header,
            pending: Bytes::new(),
            sent_bytes: 0,
            digest: Sha256::new(),
            finished: false,
        })
    }

    /// The next message: a payload chunk, then the digest, then `None`. An image that yields
    /// more or fewer bytes than it announced ends the stream with an error.
    pub fn next_message(&mut self) -> Option<Result<pb::SnapshotResponse, ApiError>> {
        if self.finished {
            return None;
        }
        let total = self.image.total_bytes;
        if self.sent_bytes == total {
            self.finished = true;
            if !self.pending.is_empty() || self.image.chunks.next().is_some() {
                return Some(Err(ApiError::StorageFailure(format!(
                    "snapshot image is longer than the {total} bytes it announced"
                ))));
            }
            let digest = std::mem::take(&mut self.digest).finalize();
            return Some(Ok(pb::SnapshotResponse {
                header: Some(self.header),
                remaining_bytes: 0,
                blob: Bytes::copy_from_slice(&digest),
            }));
        }
        let chunk_bytes = (total - self.sent_bytes).min(SNAPSHOT_CHUNK_BYTES as u64) as usize;
        let mut blob = BytesMut::with_capacity(chunk_bytes);
        while blob.len() < chunk_bytes {
            if self.pending.is_empty() {
                match self.image.chunks.next() {
                    Some(Ok(chunk)) => self.pending = chunk,
                    Some(Err(error)) => {
                        self.finished = true;
                        return Some(Err(error.into()));
                    }
                    None => break,
                }
            }
            let take = self.pending.len().min(chunk_bytes - blob.len());
            blob.extend_from_slice(&self.pending.split_to(take));
        }
        self.sent_bytes += blob.len() as u64;
        if blob.len() < chunk_bytes {
            self.finished = true;
            return Some(Err(ApiError::StorageFailure(format!(
                "snapshot image yielded {} bytes, it announced {total}",
                self.sent_bytes
            ))));
        }
        self.digest.update(&blob);
        Some(Ok(pb::SnapshotResponse {
            header: Some(self.header),
            remaining_bytes: total - self.sent_bytes,
            blob: blob.freeze(),
        }))
    }

    /// The messages as the gRPC response stream.
    pub fn into_stream(self) -> BoxStream<pb::SnapshotResponse> {
        Box::pin(futures_util::stream::unfold(self, |mut chunks| async move {
            let message = chunks.next_message()?;
            Some((message.map_err(Status::from), chunks))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::BackendError;

    fn image(pages: Vec<Result<Bytes, BackendError>>, total_bytes: u64) -> BackendImage {
        BackendImage {
            total_bytes,
            chunks: Box::new(pages.into_iter()),
        }
    }

    fn page(fill: u8, bytes: usize) -> Result<Bytes, BackendError> {
        Ok(Bytes::from(vec![fill; bytes]))
    }

    fn drain(mut chunks: SnapshotChunks) -> Vec<Result<pb::SnapshotResponse, ApiError>> {
        std::iter::from_fn(|| chunks.next_message()).collect()
    }

    #[test]
    fn chunks_count_down_and_end_with_the_sha256_of_the_payload() {
        // 20 pages of 4 KiB = 80 KiB: chunks of 32, 32 and 16 KiB.
        let pages: Vec<_> = (0..20).map(|index| page(index as u8, 4096)).collect();
        let payload: Vec<u8> = (0..20u8).flat_map(|index| vec![index; 4096]).collect();
        let chunks = SnapshotChunks::new(image(pages, 20 * 4096), pb::ResponseHeader::default()).unwrap();
        let messages: Vec<pb::SnapshotResponse> = drain(chunks).into_iter().map(Result::unwrap).collect();
        let sizes: Vec<(usize, u64)> = messages
            .iter()
            .map(|message| (message.blob.len(), message.remaining_bytes))
            .collect();
        assert_eq!(
            sizes,
            vec![(32768, 49152), (32768, 16384), (16384, 0), (32, 0)],
            "blob sizes and remaining bytes"
        );
        let sent: Vec<u8> = messages[..3].iter().flat_map(|message| message.blob.to_vec()).collect();
        assert_eq!(sent, payload);
        assert_eq!(messages[3].blob.as_ref(), Sha256::digest(&payload).as_slice());
        assert_eq!((sent.len() + 32) % 512, 32, "etcd's size rule");
    }

    #[test]
    fn an_image_that_breaks_its_promise_ends_in_an_error() {
        let short = SnapshotChunks::new(image(vec![page(1, 512)], 1024), pb::ResponseHeader::default()).unwrap();
        assert!(drain(short).last().unwrap().is_err(), "short image");
        let long = SnapshotChunks::new(
            image(vec![page(1, 512), page(2, 512)], 512),
            pb::ResponseHeader::default(),
        );
        let results = drain(long.unwrap());
        assert!(results[0].is_ok());
        assert!(results.last().unwrap().is_err(), "long image");
        let failing = SnapshotChunks::new(
            image(vec![Err(BackendError::new("page 9 checksum"))], 512),
            pb::ResponseHeader::default(),
        );
        assert!(drain(failing.unwrap())[0].is_err(), "read error");
        assert!(SnapshotChunks::new(image(vec![], 100), pb::ResponseHeader::default()).is_err());
    }
}
