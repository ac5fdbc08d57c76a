//! Batch segment I/O that bypasses the page cache (`O_DIRECT`) where the file system allows it (issue 16).
//!
//! Every validator writes every batch once, and the executor reads it back once: at 50k tx/s about 27 MB/s each
//! way per validator. Through the page cache each write is a copy into cache pages, and on this VM a page the
//! host reclaimed faults back in on first touch: `copy_folio_from_iter_atomic` was 5-16% of a validator's CPU,
//! the store's share of a run 1.5-7.7 µs/tx by the hour. With `O_DIRECT` the device reads and writes the
//! process's own buffers: `dd` wrote 500 MB in 0.06 s of system time, read it in 0.02 s.
//!
//! `O_DIRECT` wants the buffer's address, the file offset and the length aligned ([`ALIGN`], which covers 512-
//! and 4096-byte sectors). A batch is copied into an aligned window of a reused buffer ([`Scratch`]) and padded
//! with zeros to the next boundary, so every batch starts on one; a read takes the aligned blocks that cover the
//! batch and copies the batch out. Where the file system refuses `O_DIRECT` (tmpfs), or a probe write fails,
//! the same calls go through the page cache, unpadded.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Alignment of a direct read or write: address, offset and length.
pub(crate) const ALIGN: usize = 4096;

/// How a store's segments are read and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `O_DIRECT`, aligned and padded.
    Direct,
    /// Through the page cache.
    Buffered,
}

impl Mode {
    /// Direct if a file in `dir` can be opened with `O_DIRECT` and written one aligned block to.
    pub(crate) fn probe(dir: &Path) -> Mode {
        let path = dir.join(".direct-probe");
        let written = Mode::Direct
            .options()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .and_then(|file| file.write_all_at(Scratch::default().window(ALIGN), 0));
        let _ = std::fs::remove_file(&path);
        if written.is_ok() {
            Mode::Direct
        } else {
            Mode::Buffered
        }
    }

    /// Options to open a segment with: `O_DIRECT` in direct mode.
    pub(crate) fn options(self) -> OpenOptions {
        let mut options = OpenOptions::new();
        if self == Mode::Direct {
            options.custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
        }
        options
    }

    /// Writes `bytes` at `offset` (aligned in direct mode); returns how far the file's end moved: the length,
    /// padded to [`ALIGN`] in direct mode.
    pub(crate) fn write_at(self, file: &File, scratch: &mut Scratch, bytes: &[u8], offset: u64) -> io::Result<u64> {
        if self == Mode::Buffered {
            file.write_all_at(bytes, offset)?;
            return Ok(bytes.len() as u64);
        }
        let padded = bytes.len().next_multiple_of(ALIGN);
        let window = scratch.window(padded);
        window[..bytes.len()].copy_from_slice(bytes);
        window[bytes.len()..].fill(0);
        file.write_all_at(window, offset)?;
        Ok(padded as u64)
    }

    /// Reads the `len` bytes at `offset`; an end of file before them is an error.
    pub(crate) fn read_at(self, file: &File, scratch: &mut Scratch, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        if self == Mode::Buffered {
            return read_into_spare_capacity(file, len, offset);
        }
        let start = offset - offset % ALIGN as u64;
        let head = (offset - start) as usize;
        let window = scratch.window((head + len).next_multiple_of(ALIGN));
        file.read_exact_at(window, start)?;
        Ok(window[head..head + len].to_vec())
    }
}

/// `len` bytes of `file` from `offset`, read into a new buffer's spare capacity: zeroing it first, as
/// `read_exact_at` needs, was 1.5% of a validator's CPU at 50k tx/s (the executor reads every batch back).
fn read_into_spare_capacity(file: &File, len: usize, offset: u64) -> io::Result<Vec<u8>> {
    // `with_capacity` gives exactly `len` (std's guarantee), so a read never runs past the batch.
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let at = offset + bytes.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut bytes), at) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(bytes)
}

/// A buffer reused for direct I/O, with an aligned window into it. It is zeroed only where it grows, so a
/// window of a reused buffer costs nothing to hand out (and its pages stay faulted in).
#[derive(Default)]
pub(crate) struct Scratch(Vec<u8>);

impl Scratch {
    /// An aligned window of `len` bytes, holding whatever the buffer held.
    pub(crate) fn window(&mut self, len: usize) -> &mut [u8] {
        if self.0.len() < len + ALIGN {
            self.0.resize(len + ALIGN, 0);
        }
        let start = self.0.as_ptr().align_offset(ALIGN);
        &mut self.0[start..start + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of odd lengths written one after another read back exactly, in both modes; in direct mode
    /// each starts on a boundary, and a read of a batch cut short by the file's end is an error.
    #[test]
    fn odd_lengths_round_trip_in_both_modes() {
        let dir = tempfile::tempdir().unwrap();
        let probed = Mode::probe(dir.path());
        for mode in [probed, Mode::Buffered] {
            let path = dir.path().join(format!("{mode:?}.seg"));
            let file = mode.options().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
            let mut scratch = Scratch::default();
            let batches: Vec<Vec<u8>> = [1, 4095, 4096, 4097, 10_000, 3]
                .iter()
                .enumerate()
                .map(|(i, &len)| (0..len).map(|j| (i * 31 + j * 7) as u8).collect())
                .collect();
            let mut end = 0u64;
            let mut places = Vec::new();
            for batch in &batches {
                places.push(end);
                end += mode.write_at(&file, &mut scratch, batch, end).unwrap();
                if mode == Mode::Direct {
                    assert_eq!(end % ALIGN as u64, 0, "the next batch starts on a boundary");
                }
            }
            for (batch, &offset) in batches.iter().zip(&places) {
                assert_eq!(&mode.read_at(&file, &mut scratch, batch.len(), offset).unwrap(), batch, "{mode:?}");
            }
            let past_the_end = mode.read_at(&file, &mut scratch, 10, end);
            assert_eq!(past_the_end.unwrap_err().kind(), io::ErrorKind::UnexpectedEof, "{mode:?}");
        }
    }

    #[test]
    fn a_window_is_aligned_and_sized() {
        let mut scratch = Scratch::default();
        for len in [ALIGN, 3 * ALIGN, ALIGN] {
            let window = scratch.window(len);
            assert_eq!(window.len(), len);
            assert_eq!(window.as_ptr() as usize % ALIGN, 0);
        }
    }
}
