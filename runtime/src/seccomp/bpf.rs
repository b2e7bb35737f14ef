//! A small classic-BPF assembler with forward labels, enough for the ENOSYS stub put in front of
//! libseccomp's program: absolute word loads, conditional and unconditional jumps, and returns.
//! The tests also get an interpreter that runs whole filters the way the kernel does.
//!
//! Conditional jumps reach at most 255 instructions ahead; the code generator only aims them at
//! nearby labels and uses `ja` (32-bit offset) for anything far. [`Asm::assemble`] checks both.

use libc::sock_filter;

/// A position in the program, bound later with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Label(usize);

/// Where a conditional jump goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// The next instruction (offset 0).
    Next,
    /// A label further down.
    To(Label),
}

/// Conditions of `BPF_JMP` instructions (all compare the accumulator with a constant).
#[derive(Debug, Clone, Copy)]
pub(super) enum Cond {
    /// `A == k`
    Eq,
    /// `A > k` (unsigned)
    Gt,
    /// `A & k != 0`
    Set,
}

impl Cond {
    fn code(self) -> u32 {
        match self {
            Cond::Eq => libc::BPF_JEQ,
            Cond::Gt => libc::BPF_JGT,
            Cond::Set => libc::BPF_JSET,
        }
    }
}

#[derive(Debug)]
enum Op {
    Stmt {
        code: u32,
        k: u32,
    },
    Jump {
        code: u32,
        k: u32,
        jt: Target,
        jf: Target,
    },
    Ja(Label),
    Bind(Label),
}

/// The program being built.
#[derive(Debug, Default)]
pub(super) struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    /// A new, unbound label.
    pub(super) fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// Bind `label` to the next instruction.
    pub(super) fn bind(&mut self, label: Label) {
        self.ops.push(Op::Bind(label));
    }

    /// `A = *(u32 *)(data + offset)`
    pub(super) fn load(&mut self, offset: u32) {
        self.ops.push(Op::Stmt {
            code: libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            k: offset,
        });
    }

    /// `return k`
    pub(super) fn ret(&mut self, k: u32) {
        self.ops.push(Op::Stmt {
            code: libc::BPF_RET | libc::BPF_K,
            k,
        });
    }

    /// `if (A <cond> k) goto jt; else goto jf;`
    pub(super) fn jump(&mut self, cond: Cond, k: u32, jt: Target, jf: Target) {
        self.ops.push(Op::Jump {
            code: libc::BPF_JMP | cond.code() | libc::BPF_K,
            k,
            jt,
            jf,
        });
    }

    /// `goto label` (any distance forward).
    pub(super) fn ja(&mut self, label: Label) {
        self.ops.push(Op::Ja(label));
    }

    /// Resolve the labels. Fails (naming the problem) on an unbound label, a backward jump, a
    /// conditional jump further than 255 instructions or a program longer than the kernel's
    /// limit.
    pub(super) fn assemble(self) -> Result<Vec<sock_filter>, String> {
        let mut at = vec![None; self.labels];
        let mut pc = 0usize;
        for op in &self.ops {
            match op {
                Op::Bind(Label(l)) => at[*l] = Some(pc),
                _ => pc += 1,
            }
        }
        let max = usize::try_from(libc::BPF_MAXINSNS).unwrap_or(4096);
        if pc > max {
            return Err(format!(
                "the filter has {pc} instructions, more than the kernel's limit of {max}"
            ));
        }
        let offset = |from: usize, label: Label| -> Result<usize, String> {
            let to = at[label.0].ok_or_else(|| format!("internal: label {} unbound", label.0))?;
            to.checked_sub(from + 1)
                .ok_or_else(|| format!("internal: backward jump at {from}"))
        };
        let short = |from: usize, t: Target| -> Result<u8, String> {
            match t {
                Target::Next => Ok(0),
                Target::To(l) => u8::try_from(offset(from, l)?)
                    .map_err(|_| format!("internal: conditional jump too far at {from}")),
            }
        };
        let mut out = Vec::with_capacity(pc);
        for op in &self.ops {
            let pc = out.len();
            let insn = match *op {
                Op::Bind(_) => continue,
                Op::Stmt { code, k } => insn(code, 0, 0, k),
                Op::Jump { code, k, jt, jf } => insn(code, short(pc, jt)?, short(pc, jf)?, k),
                Op::Ja(l) => {
                    let k = u32::try_from(offset(pc, l)?)
                        .map_err(|_| format!("internal: jump too far at {pc}"))?;
                    insn(libc::BPF_JMP | libc::BPF_JA, 0, 0, k)
                }
            };
            out.push(insn);
        }
        Ok(out)
    }
}

fn insn(code: u32, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter {
        // BPF opcodes are 16-bit; libc declares the constants as u32.
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Run `program` on `data` (a `struct seccomp_data` as bytes) the way the kernel would, for
/// tests. Panics on an instruction neither the assembler nor libseccomp produces.
#[cfg(test)]
pub(super) fn run(program: &[sock_filter], data: &[u8]) -> u32 {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let i = program[pc];
        let code = u32::from(i.code);
        pc += 1;
        if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
            let o = i.k as usize;
            a = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
        } else if code == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K {
            a &= i.k;
        } else if code == libc::BPF_RET | libc::BPF_K {
            return i.k;
        } else if code == libc::BPF_JMP | libc::BPF_JA {
            pc += i.k as usize;
        } else {
            let taken = match code & !(libc::BPF_JMP | libc::BPF_K) {
                c if c == libc::BPF_JEQ => a == i.k,
                c if c == libc::BPF_JGT => a > i.k,
                c if c == libc::BPF_JGE => a >= i.k,
                c if c == libc::BPF_JSET => a & i.k != 0,
                _ => panic!("unexpected opcode {code:#x}"),
            };
            pc += usize::from(if taken { i.jt } else { i.jf });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_bpf_labels_resolve_forward() {
        let mut a = Asm::default();
        let end = a.label();
        a.load(0);
        a.jump(Cond::Eq, 7, Target::Next, Target::To(end));
        a.ret(1);
        a.bind(end);
        a.ret(2);
        let p = a.assemble().unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!((p[1].jt, p[1].jf), (0, 1));
        assert_eq!(run(&p, &7u32.to_ne_bytes()), 1);
        assert_eq!(run(&p, &8u32.to_ne_bytes()), 2);
    }

    #[test]
    fn seccomp_bpf_far_conditional_jump_is_an_error() {
        let mut a = Asm::default();
        let end = a.label();
        a.jump(Cond::Eq, 0, Target::To(end), Target::Next);
        for _ in 0..300 {
            a.ret(0);
        }
        a.bind(end);
        a.ret(1);
        assert!(a.assemble().unwrap_err().contains("too far"));
    }
}
