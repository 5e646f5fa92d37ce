//! Opening a WAL: read every segment, apply the recovery decision table,
//! replay the records, and get the last segment ready for appends.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::record::{encoded_len, Header, RecordKind, ALIGNMENT, FORMAT_VERSION, SEGMENT_MAGIC};
use super::recovery::{decide, scan_segment, Decision, ScanResult, SegmentRole, SegmentScan};
use super::replay::{LogState, Replay};
use super::{
    opening_records, parse_segment_name, segment_name, Files, LogBuffer, Recovered, Repair, SegmentInfo, Shared, Wal,
    WalError, WalOptions,
};
use crate::io::{Dir, LogDevice};

fn io_error(operation: impl Into<String>) -> impl FnOnce(io::Error) -> WalError {
    let operation = operation.into();
    move |source| WalError::Io { operation, source }
}

pub(super) async fn open<D: Dir>(dir: D, options: WalOptions) -> Result<(Wal<D>, Recovered), WalError> {
    let mut files: Vec<(u64, u64, String)> = dir
        .list()
        .map_err(io_error("list WAL directory"))?
        .into_iter()
        .filter_map(|name| parse_segment_name(&name).map(|(sequence, first_index)| (sequence, first_index, name)))
        .collect();
    files.sort();
    for pair in files.windows(2) {
        if pair[1].0 != pair[0].0 + 1 {
            return Err(WalError::Corrupt {
                file: pair[1].2.clone(),
                offset: 0,
                reason: format!("the segment before it should have sequence number {:x}", pair[1].0 - 1),
            });
        }
    }

    let mut replay = Replay::default();
    let mut segments: Vec<SegmentInfo> = Vec::new();
    let mut repairs = Vec::new();
    let mut zero_tail_bytes = 0;
    let mut active: Option<(D::Log, u64)> = None;
    for (position, (sequence, first_index, name)) in files.iter().enumerate() {
        let role = if position + 1 == files.len() {
            SegmentRole::Last
        } else {
            SegmentRole::Sealed
        };
        let device = dir
            .open_log(name)
            .await
            .map_err(io_error(format!("open segment {name}")))?;
        let len = device.len();
        let data = device
            .read_at(0, len as usize)
            .await
            .map_err(io_error(format!("read segment {name}")))?;
        if data.len() as u64 != len {
            let short = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read {} of {len} bytes", data.len()),
            );
            return Err(WalError::Io {
                operation: format!("read segment {name}"),
                source: short,
            });
        }
        let scan = scan_segment(&data, *sequence);
        let corrupt = |offset: u64, reason: String| WalError::Corrupt {
            file: name.clone(),
            offset,
            reason,
        };
        match decide(role, scan.result) {
            Decision::Accept => {}
            Decision::Refuse => return Err(corrupt(scan.valid_end as u64, refusal_reason(role, &scan))),
            Decision::CutZeros => zero_tail_bytes += len - scan.valid_end as u64,
            Decision::TruncateTail | Decision::TruncateUnproven => {
                let ScanResult::Damaged { damage, .. } = scan.result else {
                    panic!("truncation decided for an undamaged scan of {name}: {:?}", scan.result)
                };
                let repair = Repair {
                    file: name.clone(),
                    offset: scan.valid_end as u64,
                    damage,
                    dropped_bytes: len - scan.valid_end as u64,
                    dropped_records: scan.records_after_damage,
                };
                eprintln!(
                    "braid wal: truncating the torn tail of {name} at offset {}: {damage:?}; {} bytes and {} \
                     valid-looking but never-synced records dropped",
                    repair.offset, repair.dropped_bytes, repair.dropped_records
                );
                repairs.push(repair);
            }
        }

        let mut records = scan.records.iter();
        let Some((header, payload)) = records.next() else {
            // Not even a header survived: the segment's creation never became
            // durable (only possible for the last one). Start it over.
            dir.remove(name)
                .await
                .map_err(io_error(format!("remove empty segment {name}")))?;
            dir.sync_dir().await.map_err(io_error("directory fsync"))?;
            continue;
        };
        let expected_first = if segments.is_empty() {
            *first_index
        } else {
            replay.state.last_index + 1
        };
        if let Some(reason) = header_problem(header, &data[payload.clone()], *first_index, expected_first) {
            return Err(corrupt(0, reason));
        }
        if segments.is_empty() {
            replay.state.last_index = header.index - 1;
        }
        let mut max_entry_index = None;
        let mut opening_bytes = encoded_len(header.payload_len as usize) as u64;
        let mut in_opening = true;
        for (header, payload) in records {
            replay
                .apply(header, data.slice(payload.clone()))
                .map_err(|reason| corrupt(header.offset as u64, reason))?;
            in_opening &= matches!(header.kind, RecordKind::HardState | RecordKind::SnapshotMarker);
            if in_opening {
                opening_bytes = header.offset as u64 + encoded_len(header.payload_len as usize) as u64;
            }
            if header.kind == RecordKind::Entry {
                max_entry_index = Some(max_entry_index.map_or(header.index, |max: u64| max.max(header.index)));
            }
        }
        // Appends stay aligned even if a crash cut a record's padding.
        let keep = (scan.valid_end as u64).next_multiple_of(ALIGNMENT as u64);
        if keep != len {
            device
                .truncate(keep)
                .await
                .map_err(io_error(format!("truncate torn tail {name}")))?;
        }
        if role == SegmentRole::Last {
            // What we read may have come from the page cache of a process that
            // died before syncing it; make it durable before anyone relies on it.
            device
                .sync()
                .await
                .map_err(io_error(format!("sync last segment {name}")))?;
        }
        segments.push(SegmentInfo {
            sequence: *sequence,
            name: name.clone(),
            max_entry_index,
            opening_bytes,
        });
        if role == SegmentRole::Last {
            device.zero_ahead(options.segment_size_bytes);
            active = Some((device, keep));
        }
    }

    // Likewise for directory entries a dead process created but never synced.
    dir.sync_dir().await.map_err(io_error("directory fsync"))?;
    let (device, appended_bytes) = match active {
        Some(active) => active,
        None => {
            let sequence = match (segments.last(), files.last()) {
                (Some(last), _) => last.sequence + 1,
                (None, Some(removed)) => removed.0,
                (None, None) => 1,
            };
            let first_index = replay.state.last_index + 1;
            let (device, info) = create_segment(&dir, options.segment_size_bytes, &replay.state, sequence, first_index)
                .await
                .map_err(|(operation, source)| WalError::Io {
                    operation: operation.to_string(),
                    source,
                })?;
            let opening_bytes = info.opening_bytes;
            segments.push(info);
            (device, opening_bytes)
        }
    };

    let recovered = Recovered {
        hard_state: replay.state.hard_state,
        snapshot_marker: replay.state.snapshot_marker.clone(),
        entries: std::mem::take(&mut replay.entries),
        repairs,
        zero_tail_bytes,
    };
    let shared = Shared {
        active: Arc::new(device),
        active_sequence: segments.last().expect("a segment was found or created").sequence,
        appended_bytes,
        // Everything on disk now was read back after a sync or just synced.
        durable_bytes: appended_bytes,
        failure: None,
    };
    let files = Files {
        segments,
        flushed_state: replay.state.clone(),
        buffer: Default::default(),
    };
    let log = LogBuffer {
        state: replay.state,
        pending: Vec::new(),
        pending_bytes: 0,
    };
    let wal = Wal {
        dir,
        options,
        log: Mutex::new(log),
        files: tokio::sync::Mutex::new(files),
        shared: Mutex::new(shared),
    };
    Ok((wal, recovered))
}

/// Creates segment `sequence`, writes its opening records, and makes it and its
/// directory entry durable before anything else is written to it.
pub(super) async fn create_segment<D: Dir>(
    dir: &D,
    segment_size_bytes: u64,
    state: &LogState,
    sequence: u64,
    first_index: u64,
) -> Result<(D::Log, SegmentInfo), (&'static str, io::Error)> {
    let name = segment_name(sequence, first_index);
    let device = dir.open_log(&name).await.map_err(|error| ("create segment", error))?;
    if device.len() != 0 {
        // A file a crash restored after recovery had removed it: start afresh.
        device.truncate(0).await.map_err(|error| ("reset segment", error))?;
    }
    device
        .preallocate(segment_size_bytes)
        .await
        .map_err(|error| ("preallocate segment", error))?;
    device.zero_ahead(segment_size_bytes);
    let opening: Bytes = opening_records(sequence, first_index, state);
    let opening_bytes = opening.len() as u64;
    device
        .append(opening)
        .await
        .map_err(|error| ("write segment header", error))?;
    device.sync().await.map_err(|error| ("sync new segment", error))?;
    dir.sync_dir().await.map_err(|error| ("directory fsync", error))?;
    Ok((
        device,
        SegmentInfo {
            sequence,
            name,
            max_entry_index: None,
            opening_bytes,
        },
    ))
}

fn header_problem(header: &Header, payload: &[u8], named_first: u64, expected_first: u64) -> Option<String> {
    if header.kind != RecordKind::SegmentHeader {
        return Some(format!("the first record is a {:?}, not a segment header", header.kind));
    }
    if payload.len() != 12 || &payload[..8] != SEGMENT_MAGIC {
        return Some("the segment header lacks the braid WAL magic".to_string());
    }
    let version = u32::from_le_bytes(payload[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Some(format!(
            "unsupported WAL format version {version} (this build reads {FORMAT_VERSION})"
        ));
    }
    if header.index == 0 || header.index != named_first {
        return Some(format!(
            "the header says the segment starts at index {}, its name says {named_first}",
            header.index
        ));
    }
    if header.index != expected_first {
        return Some(format!(
            "the segment starts at index {} but the log before it ends at {}",
            header.index,
            expected_first - 1
        ));
    }
    None
}

fn refusal_reason(role: SegmentRole, scan: &SegmentScan) -> String {
    let ScanResult::Damaged { damage, .. } = scan.result else {
        panic!("refusal decided for an undamaged scan: {:?}", scan.result)
    };
    match role {
        SegmentRole::Sealed => format!(
            "{damage:?} damage in a sealed segment (a later segment exists, so this one was synced in full); \
             refusing to truncate committed data"
        ),
        SegmentRole::Last => format!(
            "{damage:?} damage below the durable offset recorded by a later record ({} valid records follow); \
             refusing to truncate committed data",
            scan.records_after_damage
        ),
    }
}
