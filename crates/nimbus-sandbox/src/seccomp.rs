//! The system-call policy, as data.
//!
//! Nimbus runs arbitrary language runtimes (CPython, Node, custom `bootstrap`
//! binaries), so an allow-list would break them unpredictably; like Docker's
//! default profile we deny the calls that only serve to attack the kernel or
//! escape, and allow the rest. Each denied call fails with `EPERM` (or
//! `ENOSYS`, where libc must fall back) rather than killing the process, so a
//! runtime that merely probes for a feature keeps working.
//!
//! The filter is compiled to BPF in the parent *before* the child is cloned
//! and installed by the child as its very last step before `execve`.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Errors compiling the policy.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccompiler rejected the policy.
    #[error("cannot compile the seccomp policy: {0}")]
    Compile(String),
    /// This CPU architecture has no policy.
    #[error("no seccomp policy for this architecture")]
    UnsupportedArch,
}

/// One denied system call: its name (for tests and logs), number, and why.
#[derive(Debug, Clone, Copy)]
pub struct DeniedSyscall {
    /// The syscall's name, as in `man 2`.
    pub name: &'static str,
    /// Its number on this architecture.
    pub nr: libc::c_long,
    /// Why a function never needs it.
    pub reason: &'static str,
}

macro_rules! deny {
    ($name:ident, $reason:literal) => {
        DeniedSyscall {
            name: stringify!($name),
            nr: paste_sys!($name),
            reason: $reason,
        }
    };
}

macro_rules! paste_sys {
    (ptrace) => {
        libc::SYS_ptrace
    };
    (process_vm_readv) => {
        libc::SYS_process_vm_readv
    };
    (process_vm_writev) => {
        libc::SYS_process_vm_writev
    };
    (mount) => {
        libc::SYS_mount
    };
    (umount2) => {
        libc::SYS_umount2
    };
    (pivot_root) => {
        libc::SYS_pivot_root
    };
    (chroot) => {
        libc::SYS_chroot
    };
    (fsopen) => {
        libc::SYS_fsopen
    };
    (fsconfig) => {
        libc::SYS_fsconfig
    };
    (fsmount) => {
        libc::SYS_fsmount
    };
    (fspick) => {
        libc::SYS_fspick
    };
    (move_mount) => {
        libc::SYS_move_mount
    };
    (open_tree) => {
        libc::SYS_open_tree
    };
    (mount_setattr) => {
        libc::SYS_mount_setattr
    };
    (unshare) => {
        libc::SYS_unshare
    };
    (setns) => {
        libc::SYS_setns
    };
    (kexec_load) => {
        libc::SYS_kexec_load
    };
    (kexec_file_load) => {
        libc::SYS_kexec_file_load
    };
    (init_module) => {
        libc::SYS_init_module
    };
    (finit_module) => {
        libc::SYS_finit_module
    };
    (delete_module) => {
        libc::SYS_delete_module
    };
    (reboot) => {
        libc::SYS_reboot
    };
    (swapon) => {
        libc::SYS_swapon
    };
    (swapoff) => {
        libc::SYS_swapoff
    };
    (bpf) => {
        libc::SYS_bpf
    };
    (perf_event_open) => {
        libc::SYS_perf_event_open
    };
    (userfaultfd) => {
        libc::SYS_userfaultfd
    };
    (keyctl) => {
        libc::SYS_keyctl
    };
    (add_key) => {
        libc::SYS_add_key
    };
    (request_key) => {
        libc::SYS_request_key
    };
    (open_by_handle_at) => {
        libc::SYS_open_by_handle_at
    };
    (name_to_handle_at) => {
        libc::SYS_name_to_handle_at
    };
    (acct) => {
        libc::SYS_acct
    };
    (quotactl) => {
        libc::SYS_quotactl
    };
    (syslog) => {
        libc::SYS_syslog
    };
    (settimeofday) => {
        libc::SYS_settimeofday
    };
    (clock_settime) => {
        libc::SYS_clock_settime
    };
    (clock_adjtime) => {
        libc::SYS_clock_adjtime
    };
    (adjtimex) => {
        libc::SYS_adjtimex
    };
    (iopl) => {
        libc::SYS_iopl
    };
    (ioperm) => {
        libc::SYS_ioperm
    };
    (vhangup) => {
        libc::SYS_vhangup
    };
    (lookup_dcookie) => {
        libc::SYS_lookup_dcookie
    };
    (personality) => {
        libc::SYS_personality
    };
    (io_uring_setup) => {
        libc::SYS_io_uring_setup
    };
    (io_uring_enter) => {
        libc::SYS_io_uring_enter
    };
    (io_uring_register) => {
        libc::SYS_io_uring_register
    };
}

/// Calls denied with `EPERM`. A comment per rule says why.
pub const DENIED_EPERM: &[DeniedSyscall] = &[
    deny!(
        ptrace,
        "debugging another process is the classic escape and snooping tool"
    ),
    deny!(
        process_vm_readv,
        "reads another process's memory like ptrace"
    ),
    deny!(
        process_vm_writev,
        "writes another process's memory like ptrace"
    ),
    deny!(mount, "the file system layout is fixed by the sandbox"),
    deny!(umount2, "unmounting could reveal what the sandbox masks"),
    deny!(pivot_root, "changing root is the sandbox's job"),
    deny!(chroot, "changing root is the sandbox's job"),
    deny!(fsopen, "new mount API: same reason as mount"),
    deny!(fsconfig, "new mount API: same reason as mount"),
    deny!(fsmount, "new mount API: same reason as mount"),
    deny!(fspick, "new mount API: same reason as mount"),
    deny!(move_mount, "new mount API: same reason as mount"),
    deny!(open_tree, "new mount API: same reason as mount"),
    deny!(mount_setattr, "new mount API: same reason as mount"),
    deny!(
        unshare,
        "new (user) namespaces widen the kernel attack surface"
    ),
    deny!(setns, "joining other namespaces is an escape"),
    deny!(kexec_load, "loads a new kernel"),
    deny!(kexec_file_load, "loads a new kernel"),
    deny!(init_module, "loads kernel code"),
    deny!(finit_module, "loads kernel code"),
    deny!(delete_module, "unloads kernel code"),
    deny!(reboot, "reboots the host"),
    deny!(swapon, "changes host swap"),
    deny!(swapoff, "changes host swap"),
    deny!(bpf, "eBPF programs are a large kernel attack surface"),
    deny!(
        perf_event_open,
        "side channels and a history of kernel bugs"
    ),
    deny!(userfaultfd, "used to win kernel races in exploits"),
    deny!(keyctl, "the kernel keyring is not namespaced"),
    deny!(add_key, "the kernel keyring is not namespaced"),
    deny!(request_key, "the kernel keyring is not namespaced"),
    deny!(
        open_by_handle_at,
        "opens files by handle, bypassing the mount view (shocker)"
    ),
    deny!(name_to_handle_at, "companion of open_by_handle_at"),
    deny!(acct, "process accounting is host-wide"),
    deny!(quotactl, "disk quotas are host-wide"),
    deny!(syslog, "the kernel log leaks host information"),
    deny!(settimeofday, "the clock is host-wide"),
    deny!(clock_settime, "the clock is host-wide"),
    deny!(clock_adjtime, "the clock is host-wide"),
    deny!(adjtimex, "the clock is host-wide"),
    deny!(iopl, "raw I/O port access"),
    deny!(ioperm, "raw I/O port access"),
    deny!(vhangup, "hangs up the host terminal"),
    deny!(lookup_dcookie, "kernel profiling internals"),
    deny!(
        personality,
        "can disable ASLR (READ_IMPLIES_EXEC and friends)"
    ),
    deny!(
        io_uring_setup,
        "io_uring operations bypass seccomp and have a long CVE record; libuv and others fall back"
    ),
    deny!(io_uring_enter, "see io_uring_setup"),
    deny!(io_uring_register, "see io_uring_setup"),
];

/// The two compiled programs the child installs, in order.
#[derive(Debug, Clone)]
pub struct SeccompPolicy {
    pub(crate) programs: Vec<BpfProgram>,
}

fn arch() -> Result<TargetArch, SeccompError> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(TargetArch::aarch64)
    } else {
        Err(SeccompError::UnsupportedArch)
    }
}

impl SeccompPolicy {
    /// Compiles the policy for the running architecture.
    pub fn compile() -> Result<Self, SeccompError> {
        let compile_err = |e: seccompiler::Error| SeccompError::Compile(e.to_string());
        let backend_err = |e: seccompiler::BackendError| SeccompError::Compile(e.to_string());
        let arch = arch()?;

        let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = DENIED_EPERM
            .iter()
            .map(|d| (d.nr, Vec::new())) // empty rule list = always matches
            .collect();
        // clone(2) stays allowed (fork, threads), except with CLONE_NEWUSER:
        // an unprivileged user namespace hands out capabilities.
        let newuser = libc::CLONE_NEWUSER as u64;
        eperm.insert(
            libc::SYS_clone,
            vec![SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(newuser),
                newuser,
            )
            .map_err(backend_err)?])
            .map_err(backend_err)?],
        );
        let eperm = SeccompFilter::new(
            eperm,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )
        .map_err(backend_err)?;

        // clone3 passes its flags in memory, which BPF cannot inspect: answer
        // ENOSYS so glibc and others fall back to clone(2), which we can.
        let enosys = SeccompFilter::new(
            [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .map_err(backend_err)?;

        let programs = [eperm, enosys]
            .into_iter()
            .map(|f| {
                BpfProgram::try_from(f).map_err(|e| compile_err(seccompiler::Error::Backend(e)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SeccompPolicy { programs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_compiles_and_has_no_duplicates() {
        let policy = SeccompPolicy::compile().expect("compiles");
        assert_eq!(policy.programs.len(), 2);
        let mut nrs: Vec<_> = DENIED_EPERM.iter().map(|d| d.nr).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), DENIED_EPERM.len(), "a syscall is listed twice");
    }

    #[test]
    fn required_denials_are_present() {
        // The minimum list; catches a rule removed by mistake.
        for name in [
            "ptrace",
            "mount",
            "umount2",
            "kexec_load",
            "bpf",
            "init_module",
            "finit_module",
            "delete_module",
            "reboot",
            "swapon",
        ] {
            assert!(
                DENIED_EPERM.iter().any(|d| d.name == name),
                "{name} must be denied"
            );
        }
    }
}
