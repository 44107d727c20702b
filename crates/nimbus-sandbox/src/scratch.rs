//! The environment's private `/tmp`: an ext4 file system in a sparse image
//! file on the host's disk, attached to a loop device and mounted by the child.
//!
//! Why this and not tmpfs or project quotas: see docs/design/0003-sandbox.md.
//! In short, a loop-mounted image is backed by disk (not memory), its size is
//! exactly what was asked for, it works on any host file system, and the
//! kernel frees it by itself: the image is unlinked as soon as the loop device
//! holds it, and the loop device auto-clears when the environment's private
//! mount namespace (the only place it is mounted) dies.
//!
//! `mkfs.ext4` costs ~20 ms, so each size is formatted once into a *template*
//! and every environment gets a sparse copy (a few hundred KiB of metadata).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};

/// Numbers image files uniquely within this process.
static NEXT_IMAGE: AtomicU64 = AtomicU64::new(0);
use std::time::Duration;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

/// Errors creating the scratch disk.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// A file operation on the image failed.
    #[error("scratch image {path}: {source}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// `mkfs.ext4` could not be run or failed.
    #[error("mkfs.ext4 failed for {path}: {detail}")]
    Mkfs {
        /// The template being formatted.
        path: PathBuf,
        /// stderr or the spawn error.
        detail: String,
    },
    /// The loop device could not be attached.
    #[error("cannot attach a loop device: {0}")]
    Loop(Errno),
}

/// A formatted scratch disk attached to a loop device, ready for the child to mount.
#[derive(Debug)]
pub struct ScratchDisk {
    /// `/dev/loopN`, mounted by the child at `/tmp`.
    pub(crate) device: PathBuf,
    /// Held open until the child has mounted the device: closing it before
    /// that would let `LO_FLAGS_AUTOCLEAR` detach the (already unlinked) image.
    device_fd: Option<OwnedFd>,
}

impl ScratchDisk {
    /// Drops the host's handle on the loop device. Call once the child has
    /// mounted it (or died): from then on the mount keeps it alive.
    pub(crate) fn release(&mut self) {
        self.device_fd = None;
    }
}

/// Formats templates once per size and hands out copies. Keeps a few
/// attached disks of every size it has been asked for ready in advance (a
/// background thread refills them), so a cold start does not pay for the
/// copy and the loop device setup.
#[derive(Debug)]
pub struct ScratchFactory {
    dir: PathBuf,
    /// Serialises template creation so two cold starts do not format the same size twice.
    template_lock: Mutex<()>,
    /// Ready disks per size in MiB.
    ready: Mutex<HashMap<u64, Vec<ScratchDisk>>>,
    /// Wakes the refill thread.
    refill: Condvar,
    /// How many ready disks to keep per size.
    prefill: usize,
}

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` from `<linux/loop.h>` (Linux 5.8+).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

impl ScratchFactory {
    /// Templates and images live under `dir`; `prefill` disks of each size
    /// in use are kept ready by a background thread (0: none, no thread).
    pub fn new(dir: PathBuf, prefill: usize) -> Arc<Self> {
        let factory = Arc::new(ScratchFactory {
            dir,
            template_lock: Mutex::new(()),
            ready: Mutex::new(HashMap::new()),
            refill: Condvar::new(),
            prefill,
        });
        if prefill > 0 {
            let weak = Arc::downgrade(&factory);
            let _ = std::thread::Builder::new()
                .name("nimbus-scratch".into())
                .spawn(move || refill_loop(weak));
        }
        factory
    }

    /// A `size_mb` ext4 disk attached to a loop device: a ready one if there
    /// is one, else made now.
    pub fn take(&self, size_mb: u64) -> Result<ScratchDisk, ScratchError> {
        let ready = {
            let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
            let disks = ready.entry(size_mb).or_default();
            disks.pop()
        };
        self.refill.notify_one();
        match ready {
            Some(disk) => Ok(disk),
            None => self.create(size_mb),
        }
    }

    /// Creates a `size_mb` ext4 disk and attaches it to a loop device.
    fn create(&self, size_mb: u64) -> Result<ScratchDisk, ScratchError> {
        let template = self.template(size_mb)?;
        // Process-wide, not per pool: several pools (jails) may share one directory, and
        // two images with one name would unlink each other.
        let n = NEXT_IMAGE.fetch_add(1, Ordering::Relaxed);
        let image = self
            .dir
            .join(format!("disk-{}-{n}.img", std::process::id()));
        let err = |source| ScratchError::Image {
            path: image.clone(),
            source,
        };
        sparse_copy(&template, &image).map_err(err)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&image)
            .map_err(err)?;
        // The loop device keeps the inode alive; unlinking now means nothing
        // is left on disk if the worker crashes.
        std::fs::remove_file(&image).map_err(err)?;
        attach_loop(&file)
    }

    fn template(&self, size_mb: u64) -> Result<PathBuf, ScratchError> {
        let path = self.dir.join(format!("template-{size_mb}m.img"));
        let _guard = self
            .template_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if path.exists() {
            return Ok(path);
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| ScratchError::Image {
            path: self.dir.clone(),
            source,
        })?;
        // Unique per writer: another pool on the same directory may build it at once;
        // the final rename is atomic, so either copy wins whole.
        let partial = self.dir.join(format!(
            "template-{size_mb}m.img.partial-{}-{}",
            std::process::id(),
            NEXT_IMAGE.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&partial).map_err(|source| ScratchError::Image {
            path: partial.clone(),
            source,
        })?;
        file.set_len(size_mb * 1024 * 1024)
            .map_err(|source| ScratchError::Image {
                path: partial.clone(),
                source,
            })?;
        drop(file);
        // No journal (scratch data need not survive a crash), no reserved
        // blocks (the function gets the whole size), one inode per 16 KiB.
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0", "-O", "^has_journal", "-i", "16384"])
            .args(["-E", "lazy_itable_init=1,nodiscard"])
            .arg(&partial)
            .output()
            .map_err(|e| ScratchError::Mkfs {
                path: partial.clone(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(ScratchError::Mkfs {
                path: partial,
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        std::fs::rename(&partial, &path).map_err(|source| ScratchError::Image {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

/// Keeps `prefill` ready disks per size until the factory is dropped.
fn refill_loop(factory: Weak<ScratchFactory>) {
    loop {
        let Some(f) = factory.upgrade() else { return };
        let missing: Vec<u64> = {
            let ready = f.ready.lock().unwrap_or_else(PoisonError::into_inner);
            let missing = ready
                .iter()
                .filter(|(_, disks)| disks.len() < f.prefill)
                .map(|(size, _)| *size)
                .collect::<Vec<_>>();
            if missing.is_empty() {
                // Sleep until a disk is taken (or re-check the Weak now and then).
                let _ = f
                    .refill
                    .wait_timeout(ready, Duration::from_secs(1))
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            missing
        };
        for size in missing {
            match f.create(size) {
                Ok(disk) => f
                    .ready
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(size)
                    .or_default()
                    .push(disk),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prepare a scratch disk ahead of time");
                    drop(f);
                    #[allow(clippy::disallowed_methods)] // dedicated thread, not async
                    std::thread::sleep(Duration::from_secs(1));
                    break;
                }
            }
        }
    }
}

/// Copies only the data extents of `from` (SEEK_DATA/SEEK_HOLE), keeping holes.
fn sparse_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    let src = File::open(from)?;
    let len = src.metadata()?.len() as i64;
    let dst = File::create(to)?;
    dst.set_len(len as u64)?;
    let mut pos: i64 = 0;
    while pos < len {
        let data = match lseek(&src, pos, Whence::SeekData) {
            Ok(off) => off,
            Err(Errno::ENXIO) => break, // no more data
            Err(e) => return Err(e.into()),
        };
        let hole = lseek(&src, data, Whence::SeekHole)?;
        let mut off_in = data;
        let mut off_out = data;
        while off_in < hole {
            let len = (hole - off_in) as usize;
            let n = nix::fcntl::copy_file_range(
                &src,
                Some(&mut off_in),
                &dst,
                Some(&mut off_out),
                len,
            )?;
            if n == 0 {
                break;
            }
        }
        pos = hole;
    }
    Ok(())
}

fn attach_loop(image: &File) -> Result<ScratchDisk, ScratchError> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/loop-control")
        .map_err(|e| ScratchError::Loop(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    // Another process may grab the same free device between GET_FREE and
    // CONFIGURE; that shows up as EBUSY and we simply ask again.
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(ScratchError::Loop(Errno::last()));
        }
        let device = PathBuf::from(format!("/dev/loop{n}"));
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&device)
            .map_err(|e| ScratchError::Loop(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        for flags in [LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO, LO_FLAGS_AUTOCLEAR] {
            // SAFETY: LoopConfig is a plain-old-data C struct; all-zero is a valid value.
            let mut config: LoopConfig = unsafe { std::mem::zeroed() };
            config.fd = image.as_raw_fd() as u32;
            config.info.lo_flags = flags;
            // SAFETY: `config` is a valid, initialised `struct loop_config` that
            // outlives the call; the kernel only reads it.
            let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &config) };
            if rc == 0 {
                return Ok(ScratchDisk {
                    device,
                    device_fd: Some(dev.into()),
                });
            }
            match Errno::last() {
                Errno::EBUSY => break,     // raced: try another device
                Errno::EINVAL => continue, // no direct I/O on this host fs
                e => return Err(ScratchError::Loop(e)),
            }
        }
    }
    Err(ScratchError::Loop(Errno::EBUSY))
}
