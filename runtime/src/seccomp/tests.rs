//! Tests: libseccomp's program (with the ENOSYS stub) is run by the small interpreter in
//! [`super::bpf`] on hand-made `seccomp_data` for each architecture, and really installed in
//! forked children (after no_new_privs, so no root is needed). The profiles and outcomes are
//! those the hand-written compiler this replaced was tested with, plus the other ABIs.

use super::*;
use libseccomp::{ScmpArch, ScmpSyscall};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;
use oci_spec::runtime::LinuxSeccompOperator as Op;
use serde_json::json;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const AUDIT_X86_64: u32 = 0xc000_003e;
const AUDIT_I386: u32 = 0x4000_0003;
const X32_BIT: u32 = 0x4000_0000;

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e as u32
}

fn profile(j: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(j).expect("profile parses")
}

/// Compile without the cache (each test sees its own compile).
fn compile(p: &LinuxSeccomp) -> Result<Filter> {
    super::compile::compile(&check::plan(p)?)
}

/// The native (x86_64) number of a syscall.
fn nr(name: &str) -> u32 {
    nr_on(name, ScmpArch::native())
}

fn nr_on(name: &str, arch: ScmpArch) -> u32 {
    let n = ScmpSyscall::from_name_by_arch(name, arch)
        .expect("known syscall")
        .as_raw_syscall();
    u32::try_from(n).expect("a real syscall number on this arch")
}

/// `struct seccomp_data` for the native ABI.
fn data(nr: u32, args: [u64; 6]) -> Vec<u8> {
    data_arch(nr, AUDIT_X86_64, args)
}

fn data_arch(nr: u32, arch: u32, args: [u64; 6]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&nr.to_ne_bytes());
    d.extend_from_slice(&arch.to_ne_bytes());
    d.extend_from_slice(&0u64.to_ne_bytes());
    for a in args {
        d.extend_from_slice(&a.to_ne_bytes());
    }
    assert_eq!(d.len(), std::mem::size_of::<libc::seccomp_data>());
    d
}

fn eval(f: &Filter, nr: u32, args: [u64; 6]) -> u32 {
    bpf::run(&f.program, &data(nr, args))
}

fn eval_i386(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
    bpf::run(
        &f.program,
        &data_arch(nr_on(name, ScmpArch::X86), AUDIT_I386, args),
    )
}

#[test]
fn seccomp_small_profile_translates() {
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EACCES,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0x7E02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["gettid"], "action": "SCMP_ACT_LOG"},
            {"names": ["uname"], "action": "SCMP_ACT_TRAP"},
        ]
    })))
    .unwrap();
    let z = [0; 6];
    assert_eq!(eval(&f, nr("read"), z), ALLOW);
    assert_eq!(eval(&f, nr("exit_group"), z), ALLOW);
    assert_eq!(eval(&f, nr("close"), z), errno(libc::EACCES));
    assert_eq!(eval(&f, nr("kill"), z), libc::SECCOMP_RET_KILL_PROCESS);
    assert_eq!(eval(&f, nr("getpid"), z), errno(libc::EPERM));
    assert_eq!(eval(&f, nr("getppid"), z), libc::SECCOMP_RET_TRACE | 7);
    assert_eq!(eval(&f, nr("gettid"), z), libc::SECCOMP_RET_LOG);
    assert_eq!(eval(&f, nr("uname"), z), libc::SECCOMP_RET_TRAP);
    // clone without namespace flags is allowed, with CLONE_NEWUSER it gets the default.
    let thread = (libc::CLONE_VM | libc::CLONE_THREAD) as u64;
    assert_eq!(eval(&f, nr("clone"), [thread, 0, 0, 0, 0, 0]), ALLOW);
    let newuser = thread | libc::CLONE_NEWUSER as u64;
    assert_eq!(
        eval(&f, nr("clone"), [newuser, 0, 0, 0, 0, 0]),
        errno(libc::EACCES)
    );
    // The listed i386 ABI gets the same rules with its own numbers.
    assert_eq!(eval_i386(&f, "read", z), ALLOW);
    assert_eq!(eval_i386(&f, "close", z), errno(libc::EACCES));
    assert_eq!(eval_i386(&f, "kill", z), libc::SECCOMP_RET_KILL_PROCESS);
    assert_eq!(eval_i386(&f, "getppid", z), libc::SECCOMP_RET_TRACE | 7);
    assert_eq!(eval_i386(&f, "clone", [thread, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        eval_i386(&f, "clone", [newuser, 0, 0, 0, 0, 0]),
        errno(libc::EACCES)
    );
    // And so does x32 (its numbers carry the x32 bit).
    let x32_read = nr_on("read", ScmpArch::X32) | X32_BIT;
    assert_eq!(eval(&f, x32_read, z), ALLOW);
    let x32_close = nr_on("close", ScmpArch::X32) | X32_BIT;
    assert_eq!(eval(&f, x32_close, z), errno(libc::EACCES));
}

#[test]
fn seccomp_unknown_syscall_names_are_skipped() {
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_call", "mkdir", "another_fake"], "action": "SCMP_ACT_ERRNO"}]
    })))
    .unwrap();
    let z = [0; 6];
    assert_eq!(eval(&f, nr("mkdirat"), z), ALLOW);
    #[cfg(target_arch = "x86_64")]
    assert_eq!(eval(&f, nr("mkdir"), z), errno(libc::EPERM));
    // Only unknown names: nothing to filter but the ABI checks.
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]
    })))
    .unwrap();
    assert_eq!(eval(&f, nr("read"), z), ALLOW);
}

#[test]
fn seccomp_unknown_action_is_refused_by_field() {
    let config = json!({"linux": {"seccomp": {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["close"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["open"], "action": "SCMP_ACT_FOO"},
        ]
    }}});
    assert_eq!(
        explain_parse_error(&config).unwrap(),
        r#"linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO""#
    );
    let config = json!({"linux": {"seccomp": {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]
    }}});
    assert_eq!(
        explain_parse_error(&config).unwrap(),
        r#"linux.seccomp.syscalls[0].args[0].op: unknown operator "SCMP_CMP_ABOUT""#
    );
    let config = json!({"linux": {"seccomp": {"defaultAction": "ALLOW"}}});
    assert!(explain_parse_error(&config)
        .unwrap()
        .starts_with("linux.seccomp.defaultAction: unknown action"));
    let config = json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_VAX"]}}});
    assert!(explain_parse_error(&config)
        .unwrap()
        .starts_with("linux.seccomp.architectures[0]: unknown architecture"));
    let config = json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}}});
    assert!(explain_parse_error(&config)
        .unwrap()
        .contains("missing field `names`"));
    // A valid profile is not what is wrong.
    let config = json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}});
    assert_eq!(explain_parse_error(&config), None);
}

#[test]
fn seccomp_unsupported_fields_are_refused_by_field() {
    let err = |j: serde_json::Value| validate(&profile(j)).unwrap_err().to_string();
    let e = err(json!({"defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["ioctl"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert!(
        e.contains("linux.seccomp.syscalls[1].action: SCMP_ACT_NOTIFY needs")
            && e.contains("listenerPath"),
        "{e}"
    );
    let e = err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"}));
    assert!(e.contains("linux.seccomp.defaultAction"), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}));
    assert!(e.contains("linux.seccomp.listenerMetadata"), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "agent.sock"}));
    assert!(e.contains("linux.seccomp.listenerPath"), "{e}");
    let e = err(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    assert!(
        e.contains("linux.seccomp.syscalls[0].names") && e.contains("\"write\""),
        "{e}"
    );
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}));
    assert!(e.contains("linux.seccomp.defaultErrnoRet"), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}));
    assert!(e.contains("linux.seccomp.syscalls[0].errnoRet"), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}));
    assert!(e.contains("linux.seccomp.defaultErrnoRet: 70000"), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}));
    assert!(
        e.contains("linux.seccomp.syscalls[0].args[0].index: 6"),
        "{e}"
    );
    let e = err(json!({"defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}));
    assert!(e.contains("linux.seccomp.syscalls[0].names"), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ALLOW"}]}));
    assert!(e.contains("linux.seccomp.syscalls[0].names[1]"), "{e}");
    // A notify rule with a listener is fine, and the filter says it notifies.
    let p = profile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
        "listenerMetadata": "m", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    validate(&p).unwrap();
    let f = compile(&p).unwrap();
    assert!(f.notify());
    assert_eq!(eval(&f, nr("mkdir"), [0; 6]), libc::SECCOMP_RET_USER_NOTIF);
}

/// What libseccomp's comparison means, on plain integers.
fn reference(op: Op, arg: u64, value: u64, value_two: u64) -> bool {
    match op {
        Op::ScmpCmpNe => arg != value,
        Op::ScmpCmpLt => arg < value,
        Op::ScmpCmpLe => arg <= value,
        Op::ScmpCmpEq => arg == value,
        Op::ScmpCmpGe => arg >= value,
        Op::ScmpCmpGt => arg > value,
        Op::ScmpCmpMaskedEq => arg & value == value_two,
    }
}

#[test]
fn seccomp_operators_compare_64_bits() {
    let ops = [
        (Op::ScmpCmpNe, "SCMP_CMP_NE"),
        (Op::ScmpCmpLt, "SCMP_CMP_LT"),
        (Op::ScmpCmpLe, "SCMP_CMP_LE"),
        (Op::ScmpCmpEq, "SCMP_CMP_EQ"),
        (Op::ScmpCmpGe, "SCMP_CMP_GE"),
        (Op::ScmpCmpGt, "SCMP_CMP_GT"),
        (Op::ScmpCmpMaskedEq, "SCMP_CMP_MASKED_EQ"),
    ];
    // Values around the 32-bit boundary and in both halves.
    let samples: [u64; 12] = [
        0,
        1,
        2,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0001,
        0x2_0000_0000,
        0x1_ffff_ffff,
        u64::MAX,
        u64::MAX - 1,
        0x8000_0000_0000_0000,
        0x7fff_ffff_ffff_ffff,
    ];
    let target = nr("getpid");
    for (op, name) in ops {
        for &value in &samples {
            let value_two = value & 0x0000_0001_0000_0001;
            let f = compile(&profile(json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 2, "value": value, "valueTwo": value_two, "op": name}]}]
            })))
            .unwrap();
            for &arg in &samples {
                let want = if reference(op, arg, value, value_two) {
                    ALLOW
                } else {
                    errno(libc::EPERM)
                };
                let got = eval(&f, target, [0, 0, arg, 0, 0, 0]);
                assert_eq!(got, want, "{name} arg={arg:#x} value={value:#x}");
            }
        }
    }
}

#[test]
fn seccomp_args_are_anded_unless_an_index_repeats() {
    // Two indexes: one rule, both must hold.
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]}]
    })))
    .unwrap();
    let g = nr("getpid");
    assert_eq!(eval(&f, g, [1, 2, 0, 0, 0, 0]), ALLOW);
    assert_eq!(eval(&f, g, [1, 3, 0, 0, 0, 0]), errno(libc::EPERM));
    assert_eq!(eval(&f, g, [0, 2, 0, 0, 0, 0]), errno(libc::EPERM));
    // The same index twice: runc makes one rule per condition, so either may hold.
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 5, "op": "SCMP_CMP_EQ"}]}]
    })))
    .unwrap();
    assert_eq!(eval(&f, g, [1, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(eval(&f, g, [5, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(eval(&f, g, [3, 0, 0, 0, 0, 0]), errno(libc::EPERM));
}

#[test]
fn seccomp_an_unconditional_rule_wins_over_conditional_ones() {
    // An unconditional rule and a conditional one with another action for one syscall. The
    // hand-written compiler this replaced tried the conditional rule first; libseccomp, and so
    // runc, gives the syscall the unconditional rule's action whatever the arguments, in either
    // order. This pins runc's behaviour.
    let rules = [
        json!({"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22}),
        json!({"names": ["personality"], "action": "SCMP_ACT_LOG",
               "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}),
    ];
    for order in [[0, 1], [1, 0]] {
        let f = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [rules[order[0]], rules[order[1]]]
        })))
        .unwrap();
        let p = nr("personality");
        assert_eq!(eval(&f, p, [8, 0, 0, 0, 0, 0]), errno(22), "{order:?}");
        assert_eq!(eval(&f, p, [0, 0, 0, 0, 0, 0]), errno(22), "{order:?}");
    }
    // Docker's personality rules: some values allowed, the rest gets the default.
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_LOG",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        ]
    })))
    .unwrap();
    let p = nr("personality");
    assert_eq!(eval(&f, p, [8, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(eval(&f, p, [0, 0, 0, 0, 0, 0]), libc::SECCOMP_RET_LOG);
    assert_eq!(eval(&f, p, [1, 0, 0, 0, 0, 0]), errno(libc::EPERM));
}

#[test]
fn seccomp_newer_syscalls_get_enosys_under_a_failing_default() {
    let p = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "getpid"], "action": "SCMP_ACT_ALLOW"}]
    });
    let f = compile(&profile(p)).unwrap();
    let highest = nr("read").max(nr("getpid"));
    assert_eq!(eval(&f, highest, [0; 6]), ALLOW);
    assert_eq!(eval(&f, highest + 1, [0; 6]), errno(libc::ENOSYS));
    // Below the highest named syscall, unknown ones get the default.
    let lower = (0..highest)
        .find(|n| *n != nr("read") && *n != nr("getpid"))
        .unwrap();
    assert_eq!(eval(&f, lower, [0; 6]), errno(libc::EPERM));
    // A permissive default keeps unknown syscalls allowed.
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_LOG",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}]
    })))
    .unwrap();
    assert_eq!(eval(&f, 4000, [0; 6]), libc::SECCOMP_RET_LOG);
}

#[test]
fn seccomp_listed_abis_are_filtered_and_others_killed() {
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    })))
    .unwrap();
    assert_eq!(eval_i386(&f, "getpid", [0; 6]), ALLOW);
    assert_eq!(eval_i386(&f, "mkdir", [0; 6]), errno(libc::EPERM));
    let x32_mkdir = nr_on("mkdir", ScmpArch::X32) | X32_BIT;
    assert_eq!(eval(&f, x32_mkdir, [0; 6]), errno(libc::EPERM));
    assert_eq!(eval(&f, nr("getpid"), [0; 6]), ALLOW);
    assert_eq!(eval(&f, nr("mkdirat"), [0; 6]), errno(libc::EPERM));
    // Without them in `architectures`, i386 and x32 syscalls kill: a deny list cannot be
    // bypassed through another ABI.
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    })))
    .unwrap();
    assert_eq!(
        eval_i386(&f, "getpid", [0; 6]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    assert_eq!(
        eval(&f, nr("getpid") | X32_BIT, [0; 6]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    assert_eq!(eval(&f, nr("getpid"), [0; 6]), ALLOW);
}

#[test]
fn seccomp_large_allow_list_dispatches_every_number() {
    // Every other syscall libseccomp knows is allowed, like a Docker default profile's list.
    let all: Vec<String> = (0..500)
        .filter_map(|n| ScmpSyscall::from(n).get_name_by_arch(ScmpArch::X8664).ok())
        .collect();
    assert!(all.len() > 300, "{}", all.len());
    let names: Vec<&str> = all.iter().step_by(2).map(String::as_str).collect();
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap();
    assert!(f.instructions() < 4096, "{}", f.instructions());
    let allowed: std::collections::HashSet<u32> = names.iter().map(|n| nr(n)).collect();
    let highest = *allowed.iter().max().unwrap();
    for n in 0..highest + 50 {
        let want = if allowed.contains(&n) {
            ALLOW
        } else if n > highest {
            errno(libc::ENOSYS)
        } else {
            errno(libc::EPERM)
        };
        assert_eq!(eval(&f, n, [0; 6]), want, "syscall {n}");
    }
}

#[test]
fn seccomp_flags_translate() {
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"]
    })))
    .unwrap();
    assert_eq!(f.flags(), libc::SECCOMP_FILTER_FLAG_LOG);
    let f = compile(&profile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": []}),
    ))
    .unwrap();
    assert_eq!(f.flags(), 0);
    // Without flags: SPEC_ALLOW where the kernel has it, as runc does.
    let f = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).unwrap();
    assert_eq!(
        f.flags(),
        if filter::flag_supported(libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW) {
            libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        } else {
            0
        }
    );
    assert!(!filter::flag_supported(1 << 30));
    // WAIT_KILLABLE_RECV only matters to a notify filter: without one it is left out.
    let f = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_LOG"]})))
    .unwrap();
    assert_eq!(f.flags(), libc::SECCOMP_FILTER_FLAG_LOG);
}

/// Run `f` in a forked child after setting no_new_privs; returns how the child ended.
fn in_child(f: impl FnOnce() -> i32) -> WaitStatus {
    // SAFETY: the child only makes syscalls (no locks taken by other threads are needed) and
    // leaves with _exit.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        ForkResult::Child => {
            // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
            let code = if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                100
            } else {
                f()
            };
            // SAFETY: _exit ends the child at once, without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[test]
fn seccomp_filter_really_applies_in_a_child() {
    // A deny list: mkdir fails with EACCES (instead of ENOENT for this path), the rest works.
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": libc::EACCES}]
    })))
    .unwrap();
    let status = in_child(|| {
        if f.install().is_err() {
            return 1;
        }
        let path = c"/nonexistent-myshim-seccomp/dir";
        // SAFETY: path is a valid NUL-terminated string.
        let rc = unsafe { libc::mkdir(path.as_ptr(), 0o755) };
        if rc != -1 || last_errno() != libc::EACCES {
            return 2;
        }
        // SAFETY: getpid has no arguments.
        if unsafe { libc::getpid() } <= 0 {
            return 3;
        }
        0
    });
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "child: {status:?}"
    );
}

#[test]
fn seccomp_allow_list_with_args_applies_in_a_child() {
    // An allow list: getpriority only for PRIO_PROCESS, syscalls past the list get ENOSYS.
    let f = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["exit_group", "exit", "getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getpriority"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": libc::PRIO_PROCESS, "op": "SCMP_CMP_EQ"}]},
        ]
    })))
    .unwrap();
    let highest = ["exit_group", "exit", "getpid", "getpriority"]
        .iter()
        .map(|n| nr(n))
        .max()
        .unwrap();
    let status = in_child(|| {
        if f.install().is_err() {
            return 1;
        }
        // SAFETY: raw syscalls with integer arguments.
        unsafe {
            if libc::syscall(libc::SYS_getpid) <= 0 {
                return 2;
            }
            if libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, 0) < 0 {
                return 3;
            }
            if libc::syscall(libc::SYS_getpriority, libc::PRIO_PGRP, 0) != -1
                || last_errno() != libc::EPERM
            {
                return 4;
            }
            if libc::syscall(libc::SYS_getppid) != -1 || last_errno() != libc::EPERM {
                return 5;
            }
            if libc::syscall(libc::c_long::from(highest) + 1) != -1 || last_errno() != libc::ENOSYS
            {
                return 6;
            }
        }
        0
    });
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "child: {status:?}"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn seccomp_x32_syscalls_kill_in_a_child() {
    let f = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})))
    .unwrap();
    let status = in_child(|| {
        if f.install().is_err() {
            return 1;
        }
        // SAFETY: an x32 getpid takes no arguments (and the filter kills first).
        unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) };
        2
    });
    assert!(
        matches!(
            status,
            WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _)
        ),
        "child: {status:?}"
    );
}

/// containerd's default profile (`ctr run --seccomp`, containerd 1.6), as containerd writes it.
fn containerd_default() -> LinuxSeccomp {
    serde_json::from_str(include_str!("testdata/containerd-default.json")).expect("profile parses")
}

#[test]
fn seccomp_containerd_default_profile_filters_i386_too() {
    let f = compile(&containerd_default()).unwrap();
    let z = [0; 6];
    let newuser = libc::CLONE_NEWUSER as u64;
    for (name, args, want) in [
        ("getpid", z, ALLOW),
        ("read", z, ALLOW),
        ("unshare", [newuser, 0, 0, 0, 0, 0], errno(libc::EPERM)),
        ("keyctl", z, errno(libc::EPERM)),
        ("mount", z, errno(libc::EPERM)),
        ("clone", [newuser, 0, 0, 0, 0, 0], errno(libc::EPERM)),
        ("clone", [libc::SIGCHLD as u64, 0, 0, 0, 0, 0], ALLOW),
        ("personality", [8, 0, 0, 0, 0, 0], ALLOW),
        ("personality", [1, 0, 0, 0, 0, 0], errno(libc::EPERM)),
    ] {
        assert_eq!(eval(&f, nr(name), args), want, "x86_64 {name} {args:?}");
        assert_eq!(eval_i386(&f, name, args), want, "i386 {name} {args:?}");
    }
    // i386-only names of the profile are honoured on i386.
    assert_eq!(eval_i386(&f, "socketcall", z), ALLOW);
    assert_eq!(eval_i386(&f, "_llseek", z), ALLOW);
    // clone3 gets ENOSYS (the profile says so, so that glibc falls back to clone).
    assert_eq!(eval(&f, nr("clone3"), z), errno(libc::ENOSYS));
    assert_eq!(eval_i386(&f, "clone3", z), errno(libc::ENOSYS));
    // Past the highest syscall the profile names, per ABI: ENOSYS.
    assert_eq!(eval(&f, 1000, z), errno(libc::ENOSYS));
    let i386 = |n: u32| bpf::run(&f.program, &data_arch(n, AUDIT_I386, z));
    assert_eq!(i386(1000), errno(libc::ENOSYS));
    assert_eq!(eval(&f, X32_BIT | 1000, z), errno(libc::ENOSYS));
    assert!(f.instructions() < 4096, "{}", f.instructions());
}

#[test]
fn seccomp_filter_crosses_the_init_pipe_intact() {
    let f = compile(&containerd_default()).unwrap();
    let text = serde_json::to_string(&f).unwrap();
    let back: Filter = serde_json::from_str(&text).unwrap();
    assert_eq!(back.instructions(), f.instructions());
    assert_eq!((back.flags(), back.notify()), (f.flags(), f.notify()));
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
    for n in [0, nr("getpid"), nr("unshare"), 1000] {
        assert_eq!(eval(&back, n, [0; 6]), eval(&f, n, [0; 6]));
    }
    let mut bad: serde_json::Value = serde_json::from_str(&text).unwrap();
    bad["program"] = json!("0102");
    assert!(serde_json::from_value::<Filter>(bad).is_err());
}

#[test]
fn seccomp_compiled_filters_are_cached_by_profile() {
    let a = super::compile(&containerd_default()).unwrap();
    let b = super::compile(&containerd_default()).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    let other = profile(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}),
    );
    let c = super::compile(&other).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&a, &c));
    assert_eq!(eval(&c, nr("write"), [0; 6]), errno(libc::ENOSYS));
}

#[test]
fn seccomp_notify_fd_reaches_the_listener_which_answers() {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let dir = std::env::temp_dir().join(format!("myshim-seccomp-agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock, "listenerMetadata": "test-meta",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_NOTIFY"}]}));
    let f = compile(&p).unwrap();
    // Linux 5.19 and later take the flag (with the listener).
    let killable = filter::flag_supported(
        check::FLAG_WAIT_KILLABLE_RECV | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
    );
    assert_eq!(
        f.flags(),
        if killable {
            check::FLAG_WAIT_KILLABLE_RECV
        } else {
            0
        }
    );
    let annotations = std::collections::HashMap::new();
    let sock2 = sock.clone();
    let status = std::thread::scope(|s| {
        let agent = s.spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 4096];
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
            let msg = nix::sys::socket::recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .unwrap();
            let mut fd = None;
            for c in msg.cmsgs().unwrap() {
                if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: the kernel just installed this fd for us.
                    fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
                }
            }
            let n = msg.bytes;
            let mut text = buf[..n].to_vec();
            let mut rest = Vec::new();
            (&conn).read_to_end(&mut rest).unwrap();
            text.extend(rest);
            let state: serde_json::Value = serde_json::from_slice(&text).unwrap();
            let fd = fd.expect("an fd came with the state");
            // Answer the child's mkdir with EXDEV, which the kernel never gives for mkdir.
            let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).unwrap();
            libseccomp::ScmpNotifResp::new_error(
                req.id,
                -libc::EXDEV,
                libseccomp::ScmpNotifRespFlags::empty(),
            )
            .respond(fd.as_raw_fd())
            .unwrap();
            state
        });
        let st = in_child(|| {
            let Ok(Some(fd)) = f.install() else {
                return 1;
            };
            let state = crate::hooks::HookState {
                oci_version: "1.0.2",
                id: "c1",
                status: "creating",
                pid: Some(1234),
                bundle: std::path::Path::new("/bundle"),
                annotations: &annotations,
            };
            // SAFETY: getpid has no arguments.
            let pid = unsafe { libc::getpid() };
            use std::os::fd::AsFd;
            if notify::send_to_listener(&sock2, "test-meta", fd.as_fd(), pid, &state).is_err() {
                return 2;
            }
            drop(fd);
            let path = c"/nonexistent-myshim-seccomp/dir";
            // SAFETY: path is a valid NUL-terminated string.
            let rc = unsafe { libc::mkdir(path.as_ptr(), 0o755) };
            if rc != -1 || last_errno() != libc::EXDEV {
                return 3;
            }
            0
        });
        (st, agent.join().unwrap())
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (status, state) = status;
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "child: {status:?}"
    );
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], json!("test-meta"), "{state}");
    assert_eq!(state["ociVersion"], json!("1.0.2"), "{state}");
    assert!(state["pid"].as_i64().is_some_and(|p| p > 0), "{state}");
    assert_eq!(state["state"]["id"], json!("c1"), "{state}");
    assert_eq!(state["state"]["status"], json!("creating"), "{state}");
    assert_eq!(state["state"]["pid"], json!(1234), "{state}");
}

#[test]
fn seccomp_disk_cache_returns_only_the_same_profile() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("myshim-seccomp-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let p = containerd_default();
    let key = serde_json::to_string(&p).unwrap();
    let f = compile(&p).unwrap();
    assert!(disk::load(&dir, &key).is_none());
    disk::store(&dir, &key, &f);
    let got = disk::load(&dir, &key).expect("stored");
    assert_eq!(
        serde_json::to_string(&got).unwrap(),
        serde_json::to_string(&f).unwrap()
    );
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    // Another profile, same directory: a miss.
    assert!(disk::load(&dir, &key.replace("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")).is_none());
    // A damaged file is a miss, not an error.
    for e in std::fs::read_dir(&dir).unwrap() {
        std::fs::write(e.unwrap().path(), b"{").unwrap();
    }
    assert!(disk::load(&dir, &key).is_none());
    // A directory others may write is not trusted.
    disk::store(&dir, &key, &f);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(disk::load(&dir, &key).is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}
