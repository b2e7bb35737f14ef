//! OOM kills counted by cgroup in the kernel, for cgroups that someone else removes.
//!
//! Under the systemd driver, systemd removes a scope's cgroup the moment its last process is
//! gone; when the OOM killer took that process, `memory.events` can be gone before the shim
//! reads it (runc's shim loses those OOMs: runc#5071). This module keeps the count where removal
//! cannot take it: an eBPF program on the `mark_victim` raw tracepoint (the OOM killer marking
//! its victim, in the context of the task whose allocation hit the limit) adds one to an LRU
//! hash map keyed by that task's cgroup v2 id. The shim reads the map for a cgroup whose
//! `memory.events` vanished ([`super::oom::OomWatcher`]). A cgroup id is the cgroup
//! directory's inode number and is never reused while the system runs.
//!
//! The program (r10 is the frame pointer; the map fd is patched in at load):
//!
//! | # | instruction | |
//! |---|---|---|
//! | 0 | `call get_current_cgroup_id` | r0 = the allocating task's cgroup id |
//! | 1 | `*(u64 *)(r10 - 8) = r0` | the key on the stack |
//! | 2-6 | `r0 = map_lookup_elem(map, r10 - 8)` | |
//! | 7 | `if r0 == 0 goto 11` | not counted yet |
//! | 8-10 | `lock *(u64 *)r0 += 1; goto 20` | count one more |
//! | 11-19 | `*(u64 *)(r10 - 16) = 1; map_update_elem(map, r10 - 8, r10 - 16, NOEXIST)` | first kill |
//! | 20-21 | `return 0` | |

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;

use super::bpf::{bpf, insn, load, owned_fd, Attr, Insn};
use crate::Result;

// bpf(2) commands, types and helpers used.
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_int = 17;
const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_NOEXIST: i32 = 1;
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_MAP_UPDATE_ELEM: i32 = 2;
const HELPER_GET_CURRENT_CGROUP_ID: i32 = 80;

// Opcodes.
const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
const STX_DW: u8 = 0x7b; // BPF_STX | BPF_MEM | BPF_DW
const ST_DW: u8 = 0x7a; // BPF_ST | BPF_MEM | BPF_DW
const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW (two instructions)
const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const ADD64_K: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
const ATOMIC_DW: u8 = 0xdb; // BPF_STX | BPF_ATOMIC | BPF_DW, imm BPF_ADD
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JA: u8 = 0x05; // BPF_JMP | BPF_JA
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// How many cgroups the map remembers (least recently counted ones go first).
const MAP_ENTRIES: u32 = 4096;
/// The tracepoint: the OOM killer has chosen and marked its victim.
const TRACEPOINT: &std::ffi::CStr = c"mark_victim";

/// The program counting OOM kills by cgroup into the map `map_fd` (see the module's table).
pub fn program(map_fd: i32) -> Vec<Insn> {
    let (r0, r1, r2, r3, r4, r10) = (0, 1, 2, 3, 4, 10);
    let map = |dst: u8| {
        [
            insn(LD_IMM64, dst, BPF_PSEUDO_MAP_FD, 0, map_fd),
            insn(0, 0, 0, 0, 0),
        ]
    };
    let mut p = vec![
        insn(CALL, 0, 0, 0, HELPER_GET_CURRENT_CGROUP_ID),
        insn(STX_DW, r10, r0, -8, 0),
    ];
    p.extend(map(r1));
    p.extend([
        insn(MOV64_X, r2, r10, 0, 0),
        insn(ADD64_K, r2, 0, 0, -8),
        insn(CALL, 0, 0, 0, HELPER_MAP_LOOKUP_ELEM),
        insn(JEQ_K, r0, 0, 3, 0),
        insn(MOV64_K, r1, 0, 0, 1),
        insn(ATOMIC_DW, r0, r1, 0, 0),
        insn(JA, 0, 0, 9, 0),
        insn(ST_DW, r10, 0, -16, 1),
    ]);
    p.extend(map(r1));
    p.extend([
        insn(MOV64_X, r2, r10, 0, 0),
        insn(ADD64_K, r2, 0, 0, -8),
        insn(MOV64_X, r3, r10, 0, 0),
        insn(ADD64_K, r3, 0, 0, -16),
        insn(MOV64_K, r4, 0, 0, BPF_NOEXIST),
        insn(CALL, 0, 0, 0, HELPER_MAP_UPDATE_ELEM),
        insn(MOV64_K, r0, 0, 0, 0),
        insn(EXIT, 0, 0, 0, 0),
    ]);
    p
}

/// The loaded and attached counter; detached when dropped.
#[derive(Debug)]
pub struct Tracer {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl Tracer {
    /// Create the map, load the program and attach it to the tracepoint.
    pub fn load() -> Result<Tracer> {
        let mut attr = Attr::new();
        attr.u32(0, BPF_MAP_TYPE_LRU_HASH)
            .u32(4, 8)
            .u32(8, 8)
            .u32(12, MAP_ENTRIES);
        let map = bpf(BPF_MAP_CREATE, &mut attr)
            .and_then(owned_fd)
            .context("create the OOM counter map (bpf BPF_MAP_CREATE)")?;
        let prog_fd = load(BPF_PROG_TYPE_RAW_TRACEPOINT, &program(map.as_raw_fd()))
            .context("load the OOM counter program (bpf BPF_PROG_LOAD)")?;
        let mut attr = Attr::new();
        attr.u64(0, TRACEPOINT.as_ptr() as u64)
            .u32(8, prog_fd.as_raw_fd() as u32);
        let link = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr)
            .and_then(owned_fd)
            .context("attach the OOM counter to the mark_victim tracepoint")?;
        Ok(Tracer {
            map,
            _prog: prog_fd,
            _link: link,
        })
    }

    /// The process-wide tracer, loaded on first use; `None` (logged once) where the kernel
    /// refuses it.
    pub fn shared() -> Option<&'static Tracer> {
        static TRACER: OnceLock<Option<Tracer>> = OnceLock::new();
        TRACER
            .get_or_init(|| match Tracer::load() {
                Ok(t) => Some(t),
                Err(e) => {
                    log::warn!(
                        "oom: no kernel-side OOM counter ({e:#}): an OOM kill whose cgroup \
                         systemd removes first can be missed"
                    );
                    None
                }
            })
            .as_ref()
    }

    /// OOM kills counted for the cgroup `id` since the tracer was loaded.
    pub fn kills(&self, id: u64) -> Result<u64> {
        let mut value = 0u64;
        let mut attr = Attr::new();
        attr.u32(0, self.map.as_raw_fd() as u32)
            .u64(8, &id as *const u64 as u64)
            .u64(16, &mut value as *mut u64 as u64);
        match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Ok(_) => Ok(value),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(0),
            Err(e) => Err(anyhow::Error::new(e)
                .context("read the OOM counter map")
                .into()),
        }
    }
}

/// The cgroup v2 id of the cgroup directory `dir` (its inode number).
pub fn cgroup_id(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(dir)
        .with_context(|| format!("stat cgroup {}", dir.display()))?
        .ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_where_the_table_says() {
        let p = program(7);
        assert_eq!(p.len(), 22);
        let at = |i: usize| p[i];
        // 7: if r0 == 0 goto 11 (the first-kill branch stores 1 at r10 - 16)
        assert_eq!(at(7).code, JEQ_K);
        let target = 7 + 1 + at(7).off as usize;
        assert_eq!((target, at(target).code, at(target).off), (11, ST_DW, -16));
        // 10: goto 20 (return 0)
        assert_eq!(at(10).code, JA);
        let target = 10 + 1 + at(10).off as usize;
        assert_eq!((target, at(target).code), (20, MOV64_K));
        assert_eq!(at(21).code, EXIT);
        // both map loads carry the map fd as a pseudo map fd
        for i in [2, 12] {
            assert_eq!(at(i).code, LD_IMM64);
            assert_eq!((at(i).regs >> 4, at(i).imm), (BPF_PSEUDO_MAP_FD, 7));
        }
    }

    /// Hand-run (root, a kernel with raw tracepoints; `--ignored`): the verifier accepts the
    /// program, a cgroup without OOM kills counts none, and a shell that outgrows a 16 MiB
    /// limit is counted under its cgroup v2 id (memory v1 plus the unified hierarchy on a
    /// hybrid host, or cgroup v2 alone).
    #[test]
    #[ignore]
    fn counts_the_oom_kill_of_a_cgroup() {
        use std::process::Command;
        let t = Tracer::load().expect("load the tracer");
        assert_eq!(t.kills(u64::MAX).expect("lookup"), 0);

        let name = format!("myshim-oomtrace-{}", std::process::id());
        let hybrid = Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists();
        let (mem, v2) = if hybrid {
            (
                Path::new("/sys/fs/cgroup/memory").join(&name),
                Path::new("/sys/fs/cgroup/unified").join(&name),
            )
        } else {
            let d = Path::new("/sys/fs/cgroup").join(&name);
            (d.clone(), d)
        };
        for d in [&mem, &v2] {
            let _ = std::fs::create_dir(d);
        }
        let limit = if hybrid {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        };
        std::fs::write(mem.join(limit), "16777216").expect("memory limit");
        let join = if hybrid {
            format!(
                "echo $$ > {0}/cgroup.procs; echo $$ > {1}/cgroup.procs",
                mem.display(),
                v2.display()
            )
        } else {
            format!("echo $$ > {}/cgroup.procs", v2.display())
        };
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("{join}; x=a; while true; do x=$x$x; done"))
            .status()
            .expect("run sh");
        let kills = t.kills(cgroup_id(&v2).expect("cgroup id")).expect("lookup");
        for d in [&mem, &v2] {
            let _ = std::fs::remove_dir(d);
        }
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(kills >= 1, "OOM kills counted: {kills}");
    }
}
