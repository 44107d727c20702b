//! The message that turns a pre-created shell (`shell.rs`) into one
//! function's environment: its identity, open-files limit, which of the
//! function's mounts come with it (as detached mount descriptors, see
//! `shell.rs`), working directory, program, arguments and environment.
//!
//! The host encodes it (and may allocate); the shell decodes it in place, in
//! the buffer it received it into, without allocating (it is a child cloned
//! from the multi-threaded worker, see `child.rs`). Strings stay
//! NUL-terminated in the buffer and are handed to the system calls as `&CStr`.
//!
//! Layout (little endian):
//!
//! ```text
//! u32 MAGIC, u32 uid, u32 gid, u64 nofile, u32 mounts, u32 argc, u32 envc
//! cwd\0 program\0 argv[0]\0 … argv[argc-1]\0 env[0]\0 … env[envc-1]\0
//! ```
//!
//! `mounts` has bit [`MOUNT_TASK`], [`MOUNT_RUNTIME`], [`MOUNT_OPT`] set for
//! each mount descriptor sent after stdin, stdout and stderr, in that order, and
//! [`KEEP_CONTROL`] when the program is a zygote. A zygote reads the same layout
//! (`runtimes/python/zygote.py` in nimbus-worker) for its function, with no mounts.

use std::ffi::{CStr, CString};

use nix::errno::Errno;

const MAGIC: u32 = 0x4E4D_4253; // "NMBS"

/// Largest message a shell accepts (and the size of its receive buffer).
/// Lambda caps a function's environment at 4 KiB, so real specs are far smaller.
pub(crate) const MAX_MESSAGE: usize = 128 * 1024;

/// Largest `argc + envc` a shell accepts (the size of its pointer array, minus the NULLs).
pub(crate) const MAX_STRINGS: usize = 4094;

/// A mount descriptor for `/var/task` follows.
pub(crate) const MOUNT_TASK: u32 = 1;
/// A mount descriptor for `/var/runtime` follows.
pub(crate) const MOUNT_RUNTIME: u32 = 2;
/// A mount descriptor for `/opt` follows.
pub(crate) const MOUNT_OPT: u32 = 4;
/// Not a mount: the shell keeps its control socket open across exec, because what it
/// execs is a runtime's zygote, which receives its function on it.
pub(crate) const KEEP_CONTROL: u32 = 0x100;
/// The mount bits of the `mounts` field.
pub(crate) const MOUNTS: u32 = MOUNT_TASK | MOUNT_RUNTIME | MOUNT_OPT;

/// What the host sends (borrowed from the spec being prepared).
pub(crate) struct Message<'a> {
    pub uid: u32,
    pub gid: u32,
    pub nofile: u64,
    pub mounts: u32,
    pub cwd: &'a CStr,
    pub program: &'a CStr,
    pub argv: &'a [CString],
    pub env: &'a [CString],
}

/// Encodes `m`; `None` if it would not fit a shell's buffers.
pub(crate) fn encode(m: &Message<'_>) -> Option<Vec<u8>> {
    if m.argv.is_empty() || m.argv.len() + m.env.len() > MAX_STRINGS {
        return None;
    }
    let mut out = Vec::with_capacity(4096);
    for v in [MAGIC, m.uid, m.gid] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&m.nofile.to_le_bytes());
    out.extend_from_slice(&m.mounts.to_le_bytes());
    for v in [m.argv.len(), m.env.len()] {
        out.extend_from_slice(&u32::try_from(v).ok()?.to_le_bytes());
    }
    for s in [m.cwd, m.program] {
        out.extend_from_slice(s.to_bytes_with_nul());
    }
    for s in m.argv.iter().chain(m.env) {
        out.extend_from_slice(s.to_bytes_with_nul());
    }
    (out.len() <= MAX_MESSAGE).then_some(out)
}

/// Reads a message in place. Every accessor fails with `EPROTO` on a
/// malformed message instead of reading out of bounds.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The fixed header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub uid: u32,
    pub gid: u32,
    pub nofile: u64,
    pub mounts: u32,
    pub argc: u32,
    pub envc: u32,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], Errno> {
        let end = self.pos.checked_add(N).ok_or(Errno::EPROTO)?;
        let slice = self.buf.get(self.pos..end).ok_or(Errno::EPROTO)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, Errno> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, Errno> {
        self.bytes::<8>().map(u64::from_le_bytes)
    }

    /// The next NUL-terminated string.
    pub(crate) fn cstr(&mut self) -> Result<&'a CStr, Errno> {
        let rest = self.buf.get(self.pos..).ok_or(Errno::EPROTO)?;
        let s = CStr::from_bytes_until_nul(rest).map_err(|_| Errno::EPROTO)?;
        self.pos += s.to_bytes_with_nul().len();
        Ok(s)
    }

    pub(crate) fn header(&mut self) -> Result<Header, Errno> {
        if self.u32()? != MAGIC {
            return Err(Errno::EPROTO);
        }
        let h = Header {
            uid: self.u32()?,
            gid: self.u32()?,
            nofile: self.u64()?,
            mounts: self.u32()?,
            argc: self.u32()?,
            envc: self.u32()?,
        };
        if h.mounts & !(MOUNTS | KEEP_CONTROL) != 0 {
            return Err(Errno::EPROTO);
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    fn sample() -> Vec<u8> {
        encode(&Message {
            uid: 993,
            gid: 990,
            nofile: 1024,
            mounts: MOUNT_TASK | MOUNT_OPT,
            cwd: c"/var/task",
            program: c"/var/task/bootstrap",
            argv: &[c("/var/task/bootstrap"), c("-x")],
            env: &[c("A=1"), c("B=2")],
        })
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let mut r = Reader::new(&bytes);
        let h = r.header().unwrap();
        assert_eq!(
            (h.uid, h.gid, h.nofile, h.mounts, h.argc, h.envc),
            (993, 990, 1024, MOUNT_TASK | MOUNT_OPT, 2, 2)
        );
        for want in [
            "/var/task",
            "/var/task/bootstrap",
            "/var/task/bootstrap",
            "-x",
            "A=1",
            "B=2",
        ] {
            assert_eq!(r.cstr().unwrap().to_str().unwrap(), want);
        }
        assert_eq!(r.cstr(), Err(Errno::EPROTO), "past the end");
    }

    #[test]
    fn truncated_or_foreign_messages_are_rejected() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let ok = r
                .header()
                .and_then(|_| (0..6).try_for_each(|_| r.cstr().map(drop)));
            assert!(ok.is_err(), "truncated at {cut} accepted");
        }
        let mut foreign = bytes.clone();
        foreign[0] ^= 1;
        assert_eq!(Reader::new(&foreign).header().map(drop), Err(Errno::EPROTO));
        let mut unknown_mount = bytes;
        unknown_mount[20] |= 8; // the mounts field
        assert_eq!(
            Reader::new(&unknown_mount).header().map(drop),
            Err(Errno::EPROTO)
        );
    }
}
