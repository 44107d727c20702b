//! The environment's file system, as a list of operations computed on the
//! host before the child is cloned and replayed by the child in its private
//! mount namespace.
//!
//! Layout (everything read-only except `/tmp`):
//!
//! | path           | what                                                        |
//! |----------------|-------------------------------------------------------------|
//! | `/`            | a tiny tmpfs holding only mount points, remounted read-only |
//! | `/usr` `/etc`… | the host's system directories, bound read-only              |
//! | `/etc/shadow`… | masked (an empty file or directory is bound over them)      |
//! | `/var/task`    | the function's code                                         |
//! | `/var/runtime` | the runtime's bootstrap (Nimbus's Python/Node runtimes)      |
//! | `/opt`         | layers, merged by a read-only overlay (last layer wins)     |
//! | `/tmp`         | the loop-mounted ext4 scratch disk, owned by the sandbox user |
//! | `/proc`        | a fresh procfs of the environment's own PID namespace       |
//! | `/dev`         | a tmpfs with null, zero, full, random and urandom only      |
//!
//! Nothing else of the host exists inside: no `/root`, `/home`, `/var`, `/work`,
//! `/sys`, no node data directory.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::error::SandboxError;

/// One step of building the root file system. Paths are absolute host paths
/// (the new root is a subdirectory until `pivot_root`).
#[derive(Debug)]
pub(crate) enum RootfsOp {
    /// Create a directory (mode 0755).
    MkDir(CString),
    /// Create an empty regular file (a bind-mount target).
    MkFile(CString),
    /// Create a symbolic link `link` → `target`.
    Symlink { target: CString, link: CString },
    /// Bind `src` onto `dst` and make the bind read-only, nosuid, nodev.
    BindReadOnly { src: CString, dst: CString },
    /// Bind a device node (stays writable: /dev/null must accept writes).
    BindDevice { src: CString, dst: CString },
    /// Mount a file system.
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: MsFlags,
        data: CString,
    },
    /// Give a directory to the sandbox user.
    Chown { path: CString, uid: u32, gid: u32 },
}

impl RootfsOp {
    /// Short description for error messages.
    pub(crate) fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            RootfsOp::MkDir(p) => format!("mkdir {}", s(p)),
            RootfsOp::MkFile(p) => format!("create {}", s(p)),
            RootfsOp::Symlink { link, target } => format!("symlink {} -> {}", s(link), s(target)),
            RootfsOp::BindReadOnly { src, dst } => {
                format!("bind {} at {} read-only", s(src), s(dst))
            }
            RootfsOp::BindDevice { src, dst } => format!("bind device {} at {}", s(src), s(dst)),
            RootfsOp::Mount { fstype, target, .. } => {
                format!("mount {} at {}", s(fstype), s(target))
            }
            RootfsOp::Chown { path, .. } => format!("chown {}", s(path)),
        }
    }
}

/// A borrowed view of a [`RootfsOp`]: what the child executes. Built from a
/// `RootfsOp` (plain path) or parsed in place from a shell's receive buffer
/// (pooled path, `wire.rs`), so the child never allocates.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OpRef<'a> {
    MkDir(&'a CStr),
    MkFile(&'a CStr),
    Symlink {
        target: &'a CStr,
        link: &'a CStr,
    },
    BindReadOnly {
        src: &'a CStr,
        dst: &'a CStr,
    },
    BindDevice {
        src: &'a CStr,
        dst: &'a CStr,
    },
    Mount {
        source: &'a CStr,
        target: &'a CStr,
        fstype: &'a CStr,
        flags: MsFlags,
        data: &'a CStr,
    },
    Chown {
        path: &'a CStr,
        uid: u32,
        gid: u32,
    },
}

impl RootfsOp {
    /// The borrowed view the child executes.
    pub(crate) fn as_op_ref(&self) -> OpRef<'_> {
        match self {
            RootfsOp::MkDir(p) => OpRef::MkDir(p),
            RootfsOp::MkFile(p) => OpRef::MkFile(p),
            RootfsOp::Symlink { target, link } => OpRef::Symlink { target, link },
            RootfsOp::BindReadOnly { src, dst } => OpRef::BindReadOnly { src, dst },
            RootfsOp::BindDevice { src, dst } => OpRef::BindDevice { src, dst },
            RootfsOp::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => OpRef::Mount {
                source,
                target,
                fstype,
                flags: *flags,
                data,
            },
            RootfsOp::Chown { path, uid, gid } => OpRef::Chown {
                path,
                uid: *uid,
                gid: *gid,
            },
        }
    }
}

/// What goes into one environment's root.
#[derive(Debug)]
pub(crate) struct RootfsInputs<'a> {
    pub root: &'a Path,
    /// Where the system directories come from: a runtime's root file system, or `/`.
    pub system_root: &'a Path,
    pub host_ro_paths: &'a [PathBuf],
    pub masked_paths: &'a [PathBuf],
    pub code_dir: &'a Path,
    pub runtime_dir: Option<&'a Path>,
    pub layers: &'a [PathBuf],
    pub scratch_device: Option<&'a Path>,
    pub uid: u32,
    pub gid: u32,
    /// Host file bound over `/etc/resolv.conf` (network mode), if any.
    pub resolv_conf: Option<&'a Path>,
    /// An empty, read-only regular file bound over masked files.
    pub empty_file: &'a Path,
}

pub(crate) fn cstr(p: &Path) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| SandboxError::InvalidSpec(format!("path contains NUL: {}", p.display())))
}

fn under(root: &Path, abs: &Path) -> PathBuf {
    root.join(abs.strip_prefix("/").unwrap_or(abs))
}

/// Computes the operations; checks host paths now so the child has no surprises.
/// The root is built in two parts: [`plan_base`] (the same for every function:
/// system directories, masks, `/proc`, `/dev`, mount points) and
/// [`plan_function`] (code, runtime, layers, `/tmp`). A pre-created shell
/// (`shell.rs`) replays the first part ahead of time and the second at use.
pub(crate) fn plan(i: &RootfsInputs<'_>) -> Result<Vec<RootfsOp>, SandboxError> {
    let mut ops = plan_base(&BaseInputs {
        root: i.root,
        system_root: i.system_root,
        host_ro_paths: i.host_ro_paths,
        masked_paths: i.masked_paths,
        resolv_conf: i.resolv_conf,
        empty_file: i.empty_file,
    })?;
    ops.extend(plan_function(&FunctionInputs {
        root: i.root,
        code_dir: i.code_dir,
        runtime_dir: i.runtime_dir,
        layers: i.layers,
        scratch_device: i.scratch_device,
        uid: i.uid,
        gid: i.gid,
    })?);
    Ok(ops)
}

/// What every environment's root has, whatever function it runs.
#[derive(Debug)]
pub(crate) struct BaseInputs<'a> {
    pub root: &'a Path,
    /// Where the system directories come from: a runtime's root file system, or `/`.
    pub system_root: &'a Path,
    pub host_ro_paths: &'a [PathBuf],
    pub masked_paths: &'a [PathBuf],
    /// Host file bound over `/etc/resolv.conf` (network mode), if any.
    pub resolv_conf: Option<&'a Path>,
    /// An empty, read-only regular file bound over masked files.
    pub empty_file: &'a Path,
}

/// What one function adds to the root.
#[derive(Debug)]
pub(crate) struct FunctionInputs<'a> {
    pub root: &'a Path,
    pub code_dir: &'a Path,
    pub runtime_dir: Option<&'a Path>,
    pub layers: &'a [PathBuf],
    pub scratch_device: Option<&'a Path>,
    pub uid: u32,
    pub gid: u32,
}

/// The function-independent part: root tmpfs, system directories, masks,
/// `resolv.conf`, `/proc`, `/dev` and the (empty) mount points of the rest.
pub(crate) fn plan_base(i: &BaseInputs<'_>) -> Result<Vec<RootfsOp>, SandboxError> {
    let mut ops = Vec::new();
    let root = i.root;
    let c = cstr;
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    ops.push(RootfsOp::Mount {
        source: c(Path::new("tmpfs"))?,
        target: c(root)?,
        fstype: c(Path::new("tmpfs"))?,
        flags: nosuid_nodev,
        data: CString::new("size=1m,mode=0755").expect("no NUL"),
    });

    for path in i.host_ro_paths {
        // The system directory as the environment sees it (`path`), taken from the
        // system root on the host (`host`).
        let host = &under(i.system_root, path);
        let meta = match std::fs::symlink_metadata(host) {
            Ok(m) => m,
            Err(_) => continue, // e.g. no /lib64 on this distribution
        };
        let dst = under(root, path);
        if let Some(parent) = dst.parent().filter(|p| *p != root) {
            ops.push(RootfsOp::MkDir(c(parent)?));
        }
        if meta.file_type().is_symlink() {
            // Debian's merged /usr: /bin -> usr/bin. Recreate the link.
            let target = std::fs::read_link(host).map_err(|e| SandboxError::io("readlink", e))?;
            ops.push(RootfsOp::Symlink {
                target: c(&target)?,
                link: c(&dst)?,
            });
        } else if meta.is_dir() {
            ops.push(RootfsOp::MkDir(c(&dst)?));
            ops.push(RootfsOp::BindReadOnly {
                src: c(host)?,
                dst: c(&dst)?,
            });
        }
    }
    for masked in i.masked_paths {
        // Not followed: a link at a masked path would be resolved on the host, not in
        // the root (and a link hides nothing by itself; what it points to is masked
        // where it lives, if that is on the list).
        let Ok(meta) = std::fs::symlink_metadata(under(i.system_root, masked)) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        if !i.host_ro_paths.iter().any(|h| masked.starts_with(h)) {
            continue; // not visible anyway
        }
        let dst = c(&under(root, masked))?;
        if meta.is_dir() {
            ops.push(RootfsOp::Mount {
                source: c(Path::new("tmpfs"))?,
                target: dst,
                fstype: c(Path::new("tmpfs"))?,
                flags: nosuid_nodev | MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC,
                data: CString::new("size=4k,mode=0555").expect("no NUL"),
            });
        } else {
            ops.push(RootfsOp::BindReadOnly {
                src: c(i.empty_file)?,
                dst,
            });
        }
    }
    if let Some(resolv) = i.resolv_conf {
        ops.push(RootfsOp::BindReadOnly {
            src: c(resolv)?,
            dst: c(&root.join("etc/resolv.conf"))?,
        });
    }

    // Mount points filled by `plan_function`.
    for dir in ["var", "var/task", "var/runtime", "opt", "tmp"] {
        ops.push(RootfsOp::MkDir(c(&root.join(dir))?));
    }

    // /proc of the new PID namespace
    ops.push(RootfsOp::MkDir(c(&root.join("proc"))?));
    ops.push(RootfsOp::Mount {
        source: c(Path::new("proc"))?,
        target: c(&root.join("proc"))?,
        fstype: c(Path::new("proc"))?,
        flags: nosuid_nodev | MsFlags::MS_NOEXEC,
        data: CString::new("").expect("no NUL"),
    });

    // /dev
    let dev = root.join("dev");
    ops.push(RootfsOp::MkDir(c(&dev)?));
    ops.push(RootfsOp::Mount {
        source: c(Path::new("tmpfs"))?,
        target: c(&dev)?,
        fstype: c(Path::new("tmpfs"))?,
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        data: CString::new("size=64k,mode=0755").expect("no NUL"),
    });
    for node in ["null", "zero", "full", "random", "urandom"] {
        let dst = dev.join(node);
        ops.push(RootfsOp::MkFile(c(&dst)?));
        ops.push(RootfsOp::BindDevice {
            src: c(&Path::new("/dev").join(node))?,
            dst: c(&dst)?,
        });
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(RootfsOp::Symlink {
            target: c(Path::new(target))?,
            link: c(&dev.join(link))?,
        });
    }
    ops.push(RootfsOp::MkDir(c(&root.join(".old-root"))?));
    Ok(ops)
}

/// The function's part: `/var/task`, `/var/runtime`, `/opt` and `/tmp`.
pub(crate) fn plan_function(i: &FunctionInputs<'_>) -> Result<Vec<RootfsOp>, SandboxError> {
    let mut ops = Vec::new();
    let root = i.root;
    let c = cstr;
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    ops.push(RootfsOp::BindReadOnly {
        src: c(i.code_dir)?,
        dst: c(&root.join("var/task"))?,
    });
    if let Some(rt) = i.runtime_dir {
        ops.push(RootfsOp::BindReadOnly {
            src: c(rt)?,
            dst: c(&root.join("var/runtime"))?,
        });
    }
    match i.layers {
        [] => {}
        [one] => ops.push(RootfsOp::BindReadOnly {
            src: c(one)?,
            dst: c(&root.join("opt"))?,
        }),
        many => {
            // overlayfs lists the top-most lower dir first; Lambda extracts
            // layers in order, so later layers win.
            let lower: Vec<String> = many.iter().rev().map(|p| p.display().to_string()).collect();
            if lower.iter().any(|l| l.contains([':', ','])) {
                return Err(SandboxError::InvalidSpec(
                    "layer path contains ':' or ','".into(),
                ));
            }
            ops.push(RootfsOp::Mount {
                source: c(Path::new("overlay"))?,
                target: c(&root.join("opt"))?,
                fstype: c(Path::new("overlay"))?,
                flags: nosuid_nodev | MsFlags::MS_RDONLY,
                data: CString::new(format!("lowerdir={}", lower.join(":")))
                    .map_err(|_| SandboxError::InvalidSpec("NUL in layer path".into()))?,
            });
        }
    }
    if let Some(dev) = i.scratch_device {
        ops.push(RootfsOp::Mount {
            source: c(dev)?,
            target: c(&root.join("tmp"))?,
            fstype: c(Path::new("ext4"))?,
            flags: nosuid_nodev,
            data: CString::new("").expect("no NUL"),
        });
        ops.push(RootfsOp::Chown {
            path: c(&root.join("tmp"))?,
            uid: i.uid,
            gid: i.gid,
        });
    }
    Ok(ops)
}
