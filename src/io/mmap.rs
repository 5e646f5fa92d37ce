//! A read-only shared map of a page file (DESIGN.md invariant 3: pages are read
//! through the map and written with pwrite, never stored into a writable map).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};

pub(crate) struct ReadMap {
    file: Arc<File>,
    /// `None` until the first read (an empty file cannot be mapped).
    map: RwLock<Option<Mmap>>,
}

impl ReadMap {
    pub(crate) fn new(file: Arc<File>) -> Self {
        ReadMap {
            file,
            map: RwLock::new(None),
        }
    }

    /// Copies `len` bytes at `offset` out of the map, remapping first when the
    /// file has grown past the mapped length.
    pub(crate) fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let start = offset as usize;
        let end = start + len;
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(map) = map.as_ref().filter(|map| map.len() >= end) {
                // Copy out while holding the read lock: no reference into the
                // mapping outlives it, so remapping never pulls memory from
                // under a reader.
                return Ok(Bytes::copy_from_slice(&map[start..end]));
            }
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.as_ref().is_none_or(|mapped| mapped.len() < end) {
            let file_len = self.file.metadata()?.len();
            if file_len < end as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("read of {len} bytes at {offset} is past the end of the file ({file_len} bytes)"),
                ));
            }
            // SAFETY: `Mmap` hands out `&[u8]` views of the file, which is only
            // sound while nothing changes or shrinks the mapped bytes during a
            // read. That holds here because:
            // 1. braid owns its data directory; no other process writes it.
            // 2. Page files are never truncated while open (PageStore has no
            //    truncate), so the mapped range always stays backed: no SIGBUS.
            // 3. braid writes pages only through pwrite, and the copy-on-write
            //    B+tree never rewrites a page that a reader can still reach, so a
            //    write and a copy of the same bytes do not overlap.
            // 4. Views never escape: `read` copies out under the read lock, and
            //    the old map is dropped only under the write lock.
            let fresh = unsafe { MmapOptions::new().len(file_len as usize).map(&*self.file)? };
            *map = Some(fresh);
        }
        let map = map.as_ref().expect("mapped just above");
        Ok(Bytes::copy_from_slice(&map[start..end]))
    }
}
