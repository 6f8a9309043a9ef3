//! keel's stand-in for `getrandom` 0.2.
//!
//! Why it exists: rand 0.8's `thread_rng()` (which raft-rs uses for its randomized
//! election timeout) seeds itself from getrandom 0.2, and getrandom 0.2 issues the raw
//! `SYS_getrandom` syscall. madsim intercepts `libc::getrandom` but not raw syscalls, so
//! the same simulation seed would elect different leaders. This crate offers the subset of
//! getrandom 0.2's public API that our dependency tree uses and fills buffers through
//! `libc::getrandom`: deterministic under madsim, the kernel's CSPRNG in production.
//!
//! It must never depend on anything but libc.
#![no_std]
#![deny(missing_docs)]

extern crate std;

use core::fmt;
use core::mem::MaybeUninit;
use core::num::NonZeroU32;

/// An error from the entropy source, shaped like getrandom 0.2's: an OS errno or an
/// internal code at or above [`Error::INTERNAL_START`].
#[derive(Copy, Clone, Eq, PartialEq)]
pub struct Error(NonZeroU32);

impl Error {
    /// The platform is not supported (kept for API compatibility).
    pub const UNSUPPORTED: Error = Error::internal(0);
    /// `getrandom` returned no bytes without an errno.
    pub const ERRNO_NOT_POSITIVE: Error = Error::internal(1);
    /// First code reserved for this crate's own errors.
    pub const INTERNAL_START: u32 = 1 << 31;
    /// First code reserved for custom handlers.
    pub const CUSTOM_START: u32 = (1 << 31) + (1 << 30);

    const fn internal(n: u32) -> Error {
        match NonZeroU32::new(Self::INTERNAL_START + n) {
            Some(code) => Error(code),
            None => panic!("internal error code is zero"),
        }
    }

    /// The OS errno behind this error, if it is one.
    pub fn raw_os_error(self) -> Option<i32> {
        if self.0.get() < Self::INTERNAL_START {
            Some(self.0.get() as i32)
        } else {
            None
        }
    }

    /// The raw error code.
    pub const fn code(self) -> NonZeroU32 {
        self.0
    }
}

impl From<NonZeroU32> for Error {
    fn from(code: NonZeroU32) -> Self {
        Error(code)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.raw_os_error() {
            Some(errno) => write!(f, "Error {{ os_error: {errno} }}"),
            None => write!(f, "Error {{ internal_code: {} }}", self.0.get()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        match err.raw_os_error() {
            Some(errno) => std::io::Error::from_raw_os_error(errno),
            None => std::io::Error::other(err),
        }
    }
}

/// Fills `dest` with random bytes from `libc::getrandom`, retrying on EINTR and short reads.
pub fn getrandom(dest: &mut [u8]) -> Result<(), Error> {
    let mut filled = 0;
    while filled < dest.len() {
        let rest = &mut dest[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n > 0 {
            filled += n as usize;
            continue;
        }
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if n < 0 && errno == libc::EINTR {
            continue;
        }
        return Err(NonZeroU32::new(errno as u32)
            .map(Error)
            .unwrap_or(Error::ERRNO_NOT_POSITIVE));
    }
    Ok(())
}

/// Like [`getrandom`], for a possibly uninitialised buffer; returns it initialised.
pub fn getrandom_uninit(dest: &mut [MaybeUninit<u8>]) -> Result<&mut [u8], Error> {
    for byte in dest.iter_mut() {
        byte.write(0);
    }
    // SAFETY: every byte was initialised just above.
    let init = unsafe { &mut *(dest as *mut [MaybeUninit<u8>] as *mut [u8]) };
    getrandom(init)?;
    Ok(init)
}
