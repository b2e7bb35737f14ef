//! Field-level messages for a `linux.seccomp` object that does not parse: serde alone names no
//! field for a bad enum value.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompFilterFlag as Flag,
    LinuxSeccompOperator as Op,
};
use serde_json::Value;

/// When a config does not parse, find what in its `linux.seccomp` is wrong and say so by field
/// (`linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"`). `None` when the seccomp
/// object is not the problem.
pub fn explain_parse_error(config: &Value) -> Option<String> {
    let s = config.get("linux")?.get("seccomp")?;
    if s.is_null() {
        return None;
    }
    fn check<T: serde::de::DeserializeOwned>(
        v: Option<&Value>,
        field: &str,
        what: &str,
    ) -> Option<String> {
        let v = v?;
        if serde_json::from_value::<T>(v.clone()).is_ok() {
            return None;
        }
        Some(match v.as_str() {
            Some(s) => format!("{field}: unknown {what} {s:?}"),
            None => format!("{field}: {what} must be a string, not {v}"),
        })
    }
    let list = |key: &str| {
        s.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
    };
    let mut problems = Vec::new();
    problems.extend(check::<Action>(
        s.get("defaultAction"),
        "linux.seccomp.defaultAction",
        "action",
    ));
    for (i, a) in list("architectures") {
        problems.extend(check::<Arch>(
            Some(a),
            &format!("linux.seccomp.architectures[{i}]"),
            "architecture",
        ));
    }
    for (i, f) in list("flags") {
        problems.extend(check::<Flag>(
            Some(f),
            &format!("linux.seccomp.flags[{i}]"),
            "flag",
        ));
    }
    for (i, sc) in list("syscalls") {
        let field = format!("linux.seccomp.syscalls[{i}]");
        problems.extend(check::<Action>(
            sc.get("action"),
            &format!("{field}.action"),
            "action",
        ));
        for (j, arg) in sc
            .get("args")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            problems.extend(check::<Op>(
                arg.get("op"),
                &format!("{field}.args[{j}].op"),
                "operator",
            ));
        }
    }
    if let Some(first) = problems.into_iter().next() {
        return Some(first);
    }
    serde_json::from_value::<LinuxSeccomp>(s.clone())
        .err()
        .map(|e| format!("linux.seccomp: {e}"))
}
