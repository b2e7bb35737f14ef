//! cgroup v2 device rules: v2 has no `devices.allow`/`devices.deny`; the kernel asks an eBPF
//! program of type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the cgroup instead (cgroups-rs has
//! none). [`program`] compiles the spec's rules into such a program with the cgroup v1
//! semantics [`super::devices::v1_rule`] writes (everything denied first; rules in order, the
//! last one that matches decides; an allow rule matches when it grants every requested access,
//! a deny rule when it removes any of them; an `a` rule resets the default). [`attach`] loads
//! it and attaches it with `BPF_F_ALLOW_MULTI`, then detaches the programs attached before
//! (an Update replaces the rules). The `bpf(2)` plumbing here ([`Insn`], `Attr`, `bpf`, `load`)
//! also serves [`super::oom_trace`].

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::Result;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// opcode
    pub code: u8,
    /// dst register (low nibble), src register (high nibble)
    pub regs: u8,
    /// offset
    pub off: i16,
    /// immediate
    pub imm: i32,
}

// Opcodes used (classic eBPF encodings).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `bpf_cgroup_dev_ctx.access_type` low half: the device type.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
/// `access_type` high half: the access.
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

// Registers: r1 the context; r2 type, r3 access, r4 major, r5 minor, r6 scratch; r0 result.
pub(super) const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// What a rule matches, or `None` for a rule that grants or removes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Match {
    /// `None`: every type (an `a` rule).
    typ: Option<i32>,
    major: Option<u32>,
    minor: Option<u32>,
    access: i32,
    allow: bool,
}

fn matcher(rule: &LinuxDeviceCgroup) -> Result<Option<Match>> {
    // Same checks as the v1 lines (bad letters, types u and p refused).
    super::devices::v1_rule(rule)?;
    let mut access = 0;
    for c in rule.access().as_deref().unwrap_or("").chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => ACC_MKNOD,
        };
    }
    let number = |n: Option<i64>| n.and_then(|n| u32::try_from(n).ok());
    let typ = match rule.typ().unwrap_or_default() {
        LinuxDeviceType::A => {
            // Like the v1 `a` line: the whole default, whatever the numbers and access.
            return Ok(Some(Match {
                typ: None,
                major: None,
                minor: None,
                access: ACC_ALL,
                allow: rule.allow(),
            }));
        }
        LinuxDeviceType::B => DEV_BLOCK,
        _ => DEV_CHAR,
    };
    if access == 0 {
        return Ok(None);
    }
    Ok(Some(Match {
        typ: Some(typ),
        major: number(rule.major()),
        minor: number(rule.minor()),
        access,
        allow: rule.allow(),
    }))
}

/// The instructions of one rule: tests that jump past the block when the request does not
/// match, then `return allow`.
fn block(m: &Match) -> Vec<Insn> {
    // Each test is emitted with off = 0 and patched to jump to the block's end.
    let mut tests = Vec::new();
    if let Some(t) = m.typ {
        tests.push(vec![insn(JNE_K, 2, 0, 0, t)]);
    }
    if let Some(major) = m.major {
        tests.push(vec![insn(JNE_K, 4, 0, 0, major as i32)]);
    }
    if let Some(minor) = m.minor {
        tests.push(vec![insn(JNE_K, 5, 0, 0, minor as i32)]);
    }
    if m.access != ACC_ALL {
        tests.push(if m.allow {
            // Every requested bit granted: (access & !rule) == 0.
            vec![
                insn(MOV32_X, 6, 3, 0, 0),
                insn(AND32_K, 6, 0, 0, !m.access & ACC_ALL),
                insn(JNE_K, 6, 0, 0, 0),
            ]
        } else {
            // Any requested bit removed: (access & rule) != 0.
            vec![
                insn(MOV32_X, 6, 3, 0, 0),
                insn(AND32_K, 6, 0, 0, m.access),
                insn(JEQ_K, 6, 0, 0, 0),
            ]
        });
    }
    let mut out: Vec<Insn> = tests.into_iter().flatten().collect();
    out.push(insn(MOV64_K, 0, 0, 0, i32::from(m.allow)));
    out.push(insn(EXIT, 0, 0, 0, 0));
    let len = out.len();
    for (i, ins) in out.iter_mut().enumerate() {
        if ins.code == JNE_K || ins.code == JEQ_K {
            ins.off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
        }
    }
    out
}

/// Compile `rules` (spec order) into a device program.
pub fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    let mut prog = vec![
        insn(LDX_W, 2, 1, 0, 0), // r2 = ctx->access_type
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0), // r3 = ctx->access_type >> 16
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0), // r4 = ctx->major
        insn(LDX_W, 5, 1, 8, 0), // r5 = ctx->minor
    ];
    let matches = rules.iter().map(matcher).collect::<Result<Vec<_>>>()?;
    // Last matching rule wins: test them from the end; an `a` rule ends the search.
    let mut terminal = false;
    for m in matches.iter().rev().flatten() {
        prog.extend(block(m));
        if m.typ.is_none() {
            terminal = true;
            break;
        }
    }
    if !terminal {
        // Nothing matched: denied (every rule list starts from "deny all").
        prog.push(insn(MOV64_K, 0, 0, 0, 0));
        prog.push(insn(EXIT, 0, 0, 0, 0));
    }
    Ok(prog)
}

// bpf(2) commands and constants.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr`, as 32-bit words (every field used is a u32 or an aligned u64).
#[repr(C, align(8))]
pub(super) struct Attr([u32; 32]);

impl Attr {
    pub(super) fn new() -> Self {
        Attr([0; 32])
    }
    pub(super) fn u32(&mut self, offset: usize, v: u32) -> &mut Self {
        self.0[offset / 4] = v;
        self
    }
    pub(super) fn u64(&mut self, offset: usize, v: u64) -> &mut Self {
        self.0[offset / 4] = v as u32;
        self.0[offset / 4 + 1] = (v >> 32) as u32;
        self
    }
}

pub(super) fn bpf(cmd: libc::c_int, attr: &mut Attr) -> std::io::Result<i64> {
    // SAFETY: `attr` is a valid, writable bpf_attr-sized buffer for the call; the pointers in it
    // (instructions, license, id array) point to memory the caller keeps alive across it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub(super) fn owned_fd(ret: i64) -> std::io::Result<OwnedFd> {
    let fd = i32::try_from(ret).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this new fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Load the program `prog` of type `prog_type` (`BPF_PROG_LOAD`); its fd.
pub(super) fn load(prog_type: u32, prog: &[Insn]) -> std::io::Result<OwnedFd> {
    let license = c"Apache";
    let mut attr = Attr::new();
    attr.u32(0, prog_type)
        .u32(4, prog.len() as u32)
        .u64(8, prog.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64);
    bpf(BPF_PROG_LOAD, &mut attr).and_then(owned_fd)
}

/// Ids of the device programs attached to the cgroup `cg`.
fn attached(cg: &OwnedFd) -> std::io::Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = Attr::new();
    attr.u32(0, cg.as_raw_fd() as u32)
        .u32(4, BPF_CGROUP_DEVICE)
        .u64(16, ids.as_mut_ptr() as u64)
        .u32(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut attr)?;
    let count = (attr.0[6] as usize).min(ids.len());
    Ok(ids[..count].to_vec())
}

/// Ids of the device programs attached to the cgroup directory `dir`.
pub fn attached_to(dir: &Path) -> Result<Vec<u32>> {
    let cg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .with_context(|| format!("open cgroup {}", dir.display()))?;
    Ok(attached(&OwnedFd::from(cg))
        .with_context(|| format!("query device programs of {}", dir.display()))?)
}

/// Load `prog` and attach it to the cgroup directory `dir` (`BPF_F_ALLOW_MULTI`), then detach
/// the device programs that were attached before, so that the new rules replace the old ones.
pub fn attach(dir: &Path, prog: &[Insn]) -> Result<()> {
    let cg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .with_context(|| format!("open cgroup {}", dir.display()))?;
    let cg = OwnedFd::from(cg);
    let before =
        attached(&cg).with_context(|| format!("query device programs of {}", dir.display()))?;
    let fd = load(BPF_PROG_TYPE_CGROUP_DEVICE, prog)
        .context("load the device rules' eBPF program (bpf BPF_PROG_LOAD)")?;
    let mut attr = Attr::new();
    attr.u32(0, cg.as_raw_fd() as u32)
        .u32(4, fd.as_raw_fd() as u32)
        .u32(8, BPF_CGROUP_DEVICE)
        .u32(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut attr)
        .with_context(|| format!("attach the device program to {}", dir.display()))?;
    for id in before {
        let mut attr = Attr::new();
        attr.u32(0, id);
        let old = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)
            .and_then(owned_fd)
            .with_context(|| format!("get device program {id}"))?;
        let mut attr = Attr::new();
        attr.u32(0, cg.as_raw_fd() as u32)
            .u32(4, old.as_raw_fd() as u32)
            .u32(8, BPF_CGROUP_DEVICE);
        bpf(BPF_PROG_DETACH, &mut attr).with_context(|| {
            format!("detach the old device program {id} from {}", dir.display())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    use super::*;

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    /// A tiny interpreter of the instructions `program` emits, to check decisions.
    fn run(prog: &[Insn], typ: i32, access: i32, major: u32, minor: u32) -> bool {
        let ctx = [((access as u32) << 16) | typ as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1);
                    r[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                AND32_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
                RSH32_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                MOV32_X => r[dst] = u64::from(r[src] as u32),
                MOV64_K => r[dst] = i.imm as i64 as u64,
                JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                JEQ_K if r[dst] == i.imm as i64 as u64 => pc += i.off as usize,
                JNE_K | JEQ_K => {}
                EXIT => return r[0] == 1,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn deny_all_then_allow_one() {
        use LinuxDeviceType::*;
        let prog = program(&[
            rule(false, A, None, None, "rwm"),
            rule(true, C, Some(1), Some(3), "rwm"),
        ])
        .unwrap();
        // Header (6), the c 1:3 block (type, major, minor, mov, exit), the `a` block (mov, exit).
        assert_eq!(
            &prog[6..],
            &[
                insn(JNE_K, 2, 0, 4, DEV_CHAR),
                insn(JNE_K, 4, 0, 3, 1),
                insn(JNE_K, 5, 0, 2, 3),
                insn(MOV64_K, 0, 0, 0, 1),
                insn(EXIT, 0, 0, 0, 0),
                insn(MOV64_K, 0, 0, 0, 0),
                insn(EXIT, 0, 0, 0, 0),
            ]
        );
        assert!(run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3));
        assert!(!run(&prog, DEV_CHAR, ACC_READ, 1, 5));
        assert!(!run(&prog, DEV_BLOCK, ACC_READ, 1, 3));
    }

    #[test]
    fn wildcards_and_access_subsets() {
        use LinuxDeviceType::*;
        let prog = program(&[
            rule(true, C, None, None, "m"),
            rule(true, B, Some(8), None, "r"),
            rule(true, C, Some(136), None, "rw"),
        ])
        .unwrap();
        assert!(
            run(&prog, DEV_CHAR, ACC_MKNOD, 10, 200),
            "mknod of any char device"
        );
        assert!(!run(&prog, DEV_CHAR, ACC_READ, 10, 200));
        assert!(
            run(&prog, DEV_BLOCK, ACC_READ, 8, 1),
            "any minor of block 8"
        );
        assert!(
            !run(&prog, DEV_BLOCK, ACC_READ | ACC_WRITE, 8, 1),
            "w not granted"
        );
        assert!(run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 7));
        assert!(
            run(&prog, DEV_CHAR, ACC_MKNOD, 136, 7),
            "mknod from the c *:* m rule"
        );
        // No `a` rule: nothing matched is denied.
        assert_eq!(prog.last(), Some(&insn(EXIT, 0, 0, 0, 0)));
        assert!(!run(&prog, DEV_BLOCK, ACC_MKNOD, 7, 0));
    }

    #[test]
    fn later_rules_win_and_deny_removes_any_bit() {
        use LinuxDeviceType::*;
        let prog = program(&[
            rule(true, A, None, None, "rwm"),
            rule(false, C, Some(1), Some(3), "w"),
        ])
        .unwrap();
        assert!(run(&prog, DEV_BLOCK, ACC_WRITE, 8, 0), "allow-all default");
        assert!(run(&prog, DEV_CHAR, ACC_READ, 1, 3));
        assert!(
            !run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3),
            "w removed"
        );
        let prog = program(&[
            rule(true, C, Some(1), Some(3), "rwm"),
            rule(false, A, None, None, "rwm"),
        ])
        .unwrap();
        assert!(
            !run(&prog, DEV_CHAR, ACC_READ, 1, 3),
            "a later deny-all resets"
        );
        // Empty access: no rule at all.
        let prog = program(&[rule(true, C, Some(1), Some(3), "")]).unwrap();
        assert_eq!(prog.len(), 8);
    }

    #[test]
    fn containerd_defaults_compile() {
        let mut rules = vec![rule(false, LinuxDeviceType::A, None, None, "rwm")];
        rules.extend(super::super::devices::default_allowed());
        let prog = program(&rules).unwrap();
        assert!(run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 9), "urandom");
        assert!(run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 0), "pts");
        assert!(run(&prog, DEV_BLOCK, ACC_MKNOD, 8, 0), "mknod b");
        assert!(!run(&prog, DEV_BLOCK, ACC_READ, 8, 0), "open of a disk");
        assert!(program(&[rule(true, LinuxDeviceType::P, None, None, "r")]).is_err());
    }
}
