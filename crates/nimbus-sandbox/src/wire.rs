//! The message that turns a pre-created shell (`shell.rs`) into one
//! function's environment: the function's root file system operations, its
//! identity, limits, working directory, program, arguments and environment.
//!
//! The host encodes it (and may allocate); the shell decodes it in place, in
//! the buffer it received it into, without allocating (it is a child cloned
//! from the multi-threaded worker, see `child.rs`). Strings stay
//! NUL-terminated in the buffer and are handed to the system calls as `&CStr`.
//!
//! Layout (little endian):
//!
//! ```text
//! u32 MAGIC, u32 uid, u32 gid, u64 nofile, u32 n_ops, u32 argc, u32 envc
//! n_ops × { u8 kind, u64 mount flags, u32 uid, u32 gid, strings of the kind }
//! cwd\0 program\0 argv[0]\0 … argv[argc-1]\0 env[0]\0 … env[envc-1]\0
//! ```

use std::ffi::{CStr, CString};

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::filesystem::{OpRef, RootfsOp};

const MAGIC: u32 = 0x4E4D_4253; // "NMBS"

/// Largest message a shell accepts (and the size of its receive buffer).
/// Lambda caps a function's environment at 4 KiB, so real specs are far smaller.
pub(crate) const MAX_MESSAGE: usize = 128 * 1024;

/// Largest `argc + envc` a shell accepts (the size of its pointer array, minus the NULLs).
pub(crate) const MAX_STRINGS: usize = 4094;

const MKDIR: u8 = 1;
const MKFILE: u8 = 2;
const SYMLINK: u8 = 3;
const BIND_RO: u8 = 4;
const BIND_DEV: u8 = 5;
const MOUNT: u8 = 6;
const CHOWN: u8 = 7;

/// What the host sends (borrowed from the spec being prepared).
pub(crate) struct Message<'a> {
    pub uid: u32,
    pub gid: u32,
    pub nofile: u64,
    pub ops: &'a [RootfsOp],
    pub cwd: &'a CStr,
    pub program: &'a CStr,
    pub argv: &'a [CString],
    pub env: &'a [CString],
}

/// Encodes `m`; `None` if it would not fit a shell's buffers.
pub(crate) fn encode(m: &Message<'_>) -> Option<Vec<u8>> {
    if m.argv.len() + m.env.len() > MAX_STRINGS {
        return None;
    }
    let mut out = Vec::with_capacity(4096);
    for v in [MAGIC, m.uid, m.gid] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&m.nofile.to_le_bytes());
    for v in [m.ops.len(), m.argv.len(), m.env.len()] {
        out.extend_from_slice(&u32::try_from(v).ok()?.to_le_bytes());
    }
    let put = |out: &mut Vec<u8>, s: &CStr| out.extend_from_slice(s.to_bytes_with_nul());
    for op in m.ops {
        let (kind, flags, uid, gid, strings): (u8, u64, u32, u32, Vec<&CStr>) =
            match op.as_op_ref() {
                OpRef::MkDir(p) => (MKDIR, 0, 0, 0, vec![p]),
                OpRef::MkFile(p) => (MKFILE, 0, 0, 0, vec![p]),
                OpRef::Symlink { target, link } => (SYMLINK, 0, 0, 0, vec![target, link]),
                OpRef::BindReadOnly { src, dst } => (BIND_RO, 0, 0, 0, vec![src, dst]),
                OpRef::BindDevice { src, dst } => (BIND_DEV, 0, 0, 0, vec![src, dst]),
                OpRef::Mount {
                    source,
                    target,
                    fstype,
                    flags,
                    data,
                } => (
                    MOUNT,
                    flags.bits(),
                    0,
                    0,
                    vec![source, target, fstype, data],
                ),
                OpRef::Chown { path, uid, gid } => (CHOWN, 0, uid, gid, vec![path]),
            };
        out.push(kind);
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&uid.to_le_bytes());
        out.extend_from_slice(&gid.to_le_bytes());
        for s in strings {
            put(&mut out, s);
        }
    }
    put(&mut out, m.cwd);
    put(&mut out, m.program);
    for s in m.argv.iter().chain(m.env) {
        put(&mut out, s);
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
    pub n_ops: u32,
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
        Ok(Header {
            uid: self.u32()?,
            gid: self.u32()?,
            nofile: self.u64()?,
            n_ops: self.u32()?,
            argc: self.u32()?,
            envc: self.u32()?,
        })
    }

    pub(crate) fn op(&mut self) -> Result<OpRef<'a>, Errno> {
        let [kind] = self.bytes::<1>()?;
        let flags = self.u64()?;
        let uid = self.u32()?;
        let gid = self.u32()?;
        Ok(match kind {
            MKDIR => OpRef::MkDir(self.cstr()?),
            MKFILE => OpRef::MkFile(self.cstr()?),
            SYMLINK => OpRef::Symlink {
                target: self.cstr()?,
                link: self.cstr()?,
            },
            BIND_RO => OpRef::BindReadOnly {
                src: self.cstr()?,
                dst: self.cstr()?,
            },
            BIND_DEV => OpRef::BindDevice {
                src: self.cstr()?,
                dst: self.cstr()?,
            },
            MOUNT => OpRef::Mount {
                source: self.cstr()?,
                target: self.cstr()?,
                fstype: self.cstr()?,
                flags: MsFlags::from_bits(flags).ok_or(Errno::EPROTO)?,
                data: self.cstr()?,
            },
            CHOWN => OpRef::Chown {
                path: self.cstr()?,
                uid,
                gid,
            },
            _ => return Err(Errno::EPROTO),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn round_trip() {
        let ops = vec![
            RootfsOp::BindReadOnly {
                src: c("/code"),
                dst: c("/root/var/task"),
            },
            RootfsOp::Mount {
                source: c("/dev/loop3"),
                target: c("/root/tmp"),
                fstype: c("ext4"),
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                data: c(""),
            },
            RootfsOp::Chown {
                path: c("/root/tmp"),
                uid: 993,
                gid: 990,
            },
        ];
        let argv = [c("/var/task/bootstrap"), c("-x")];
        let env = [c("A=1"), c("B=2")];
        let bytes = encode(&Message {
            uid: 993,
            gid: 990,
            nofile: 1024,
            ops: &ops,
            cwd: c"/var/task",
            program: c"/var/task/bootstrap",
            argv: &argv,
            env: &env,
        })
        .unwrap();
        let mut r = Reader::new(&bytes);
        let h = r.header().unwrap();
        assert_eq!((h.uid, h.gid, h.nofile, h.n_ops, h.argc, h.envc), (993, 990, 1024, 3, 2, 2));
        assert!(matches!(r.op().unwrap(), OpRef::BindReadOnly { src, .. } if src == c"/code"));
        assert!(
            matches!(r.op().unwrap(), OpRef::Mount { flags, fstype, .. } if fstype == c"ext4" && flags.contains(MsFlags::MS_NODEV))
        );
        assert!(matches!(r.op().unwrap(), OpRef::Chown { uid: 993, gid: 990, .. }));
        for want in ["/var/task", "/var/task/bootstrap", "/var/task/bootstrap", "-x", "A=1", "B=2"] {
            assert_eq!(r.cstr().unwrap().to_str().unwrap(), want);
        }
        assert_eq!(r.cstr(), Err(Errno::EPROTO), "past the end");
    }

    #[test]
    fn truncated_or_foreign_messages_are_rejected() {
        let bytes = encode(&Message {
            uid: 1,
            gid: 1,
            nofile: 1,
            ops: &[RootfsOp::MkDir(c("/x"))],
            cwd: c"/",
            program: c"/p",
            argv: &[c("/p")],
            env: &[],
        })
        .unwrap();
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let ok = r.header().and_then(|_| r.op().map(drop)).and_then(|_| {
                (0..3).try_for_each(|_| r.cstr().map(drop))
            });
            assert!(ok.is_err(), "truncated at {cut} accepted");
        }
        let mut foreign = bytes.clone();
        foreign[0] ^= 1;
        assert_eq!(Reader::new(&foreign).header().map(drop), Err(Errno::EPROTO));
        let mut bad_kind = bytes;
        bad_kind[32] = 99; // first op's kind
        let mut r = Reader::new(&bad_kind);
        r.header().unwrap();
        assert_eq!(r.op().map(drop), Err(Errno::EPROTO));
    }
}
