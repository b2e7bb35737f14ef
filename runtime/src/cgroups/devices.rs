//! Device cgroup rules: the v1 `devices.allow`/`devices.deny` lines built from the spec's rules
//! (v2 compiles the same rules to eBPF, [`super::bpf`]) and the list of devices every container
//! may use. Pure functions.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::{Error, Result};

/// File a v1 rule is written to.
pub const V1_ALLOW: &str = "devices.allow";
/// File a v1 rule is written to.
pub const V1_DENY: &str = "devices.deny";

/// The v1 line for one spec rule and the file it goes to: `("devices.allow", "c 1:3 rwm")`.
/// A wildcard (`None` or `-1`) major/minor is `*`; a type `a` rule (or no type) is the whole-
/// behaviour line `a` (the kernel ignores anything after an `a`). A rule with an empty access
/// string grants or removes nothing and gives `None`. Types `u` and `p` have no cgroup meaning
/// and are refused, as are access letters other than `rwm`.
pub fn v1_rule(rule: &LinuxDeviceCgroup) -> Result<Option<(&'static str, String)>> {
    let file = if rule.allow() { V1_ALLOW } else { V1_DENY };
    let access = rule.access().as_deref().unwrap_or("");
    if let Some(bad) = access.chars().find(|c| !matches!(c, 'r' | 'w' | 'm')) {
        return Err(Error::invalid(format!(
            "device rule {rule}: invalid access {bad:?} (expected letters of \"rwm\")"
        )));
    }
    let typ = match rule.typ().unwrap_or_default() {
        LinuxDeviceType::A => return Ok(Some((file, "a".to_string()))),
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C => 'c',
        other => {
            return Err(Error::invalid(format!(
                "device rule {rule}: type {:?} cannot be used in a cgroup rule (a, b or c)",
                other.as_str()
            )))
        }
    };
    if access.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        file,
        format!(
            "{typ} {}:{} {access}",
            number(rule.major()),
            number(rule.minor())
        ),
    )))
}

/// A device number in a rule: wildcard (`None` or negative) is `*`.
fn number(n: Option<i64>) -> String {
    match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    }
}

/// The devices every container may use (runc's list): null, zero, full, random, urandom, tty,
/// console, ptmx, the pts devices, plus mknod of any char and block device (mknod alone
/// grants no access). Callers append these after the spec's rules when they want the usual
/// behaviour; [`crate::cgroups::CgroupManager::set`] writes only what it is given.
pub fn default_allowed() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"), // /dev/null
        rule(C, Some(1), Some(5), "rwm"), // /dev/zero
        rule(C, Some(1), Some(7), "rwm"), // /dev/full
        rule(C, Some(1), Some(8), "rwm"), // /dev/random
        rule(C, Some(1), Some(9), "rwm"), // /dev/urandom
        rule(C, Some(5), Some(0), "rwm"), // /dev/tty
        rule(C, Some(5), Some(1), "rwm"), // /dev/console
        rule(C, Some(5), Some(2), "rwm"), // /dev/ptmx
        rule(C, Some(136), None, "rwm"),  // /dev/pts/*
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: Option<&str>,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(typ);
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(access.map(str::to_string));
        r
    }

    #[test]
    fn v1_rule_strings() {
        use LinuxDeviceType::*;
        let line = |r: &LinuxDeviceCgroup| v1_rule(r).unwrap();
        assert_eq!(
            line(&rule(true, Some(C), Some(1), Some(3), Some("rwm"))),
            Some((V1_ALLOW, "c 1:3 rwm".to_string()))
        );
        assert_eq!(
            line(&rule(false, Some(B), Some(8), None, Some("w"))),
            Some((V1_DENY, "b 8:* w".to_string()))
        );
        assert_eq!(
            line(&rule(true, Some(C), Some(-1), Some(-1), Some("m"))),
            Some((V1_ALLOW, "c *:* m".to_string()))
        );
        assert_eq!(
            line(&rule(false, None, None, None, Some("rwm"))),
            Some((V1_DENY, "a".to_string()))
        );
        assert_eq!(
            line(&rule(true, Some(A), None, None, None)),
            Some((V1_ALLOW, "a".to_string()))
        );
        assert_eq!(line(&rule(true, Some(C), Some(1), Some(3), None)), None);
        assert_eq!(line(&rule(true, Some(C), Some(1), Some(3), Some(""))), None);
        assert!(matches!(
            v1_rule(&rule(true, Some(U), Some(1), Some(3), Some("rwm"))),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            v1_rule(&rule(true, Some(P), None, None, Some("rwm"))),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            v1_rule(&rule(true, Some(C), Some(1), Some(3), Some("rwx"))),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn default_allowed_lines() {
        let lines: Vec<String> = default_allowed()
            .iter()
            .filter_map(|r| v1_rule(r).unwrap())
            .map(|(f, l)| {
                assert_eq!(f, V1_ALLOW);
                l
            })
            .collect();
        assert_eq!(lines[0], "c *:* m");
        assert_eq!(lines[1], "b *:* m");
        assert!(lines.contains(&"c 1:3 rwm".to_string()));
        assert!(lines.contains(&"c 136:* rwm".to_string()));
    }
}
