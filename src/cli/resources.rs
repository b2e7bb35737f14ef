//! `pause`, `resume` and `update`: the container's cgroup. `update` takes an OCI
//! `linux.resources` JSON (`-r FILE`, `-r -` for stdin, as containerd's runc shim sends it) and
//! runc's flags, which override the file.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use serde_json::Value;

use super::args::Update;
use super::load;

/// `pause`
pub fn pause(root: &Path, id: &str) -> anyhow::Result<()> {
    Ok(load(root, id)?.pause()?)
}

/// `resume`
pub fn resume(root: &Path, id: &str) -> anyhow::Result<()> {
    Ok(load(root, id)?.resume()?)
}

/// `update`
pub fn update(root: &Path, a: &Update) -> anyhow::Result<()> {
    let container = load(root, &a.id)?;
    for warning in unsupported(a)? {
        log::warn!("{warning}");
    }
    let mut res = match &a.resources {
        Some(p) => {
            let mut text = Vec::new();
            if p.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_end(&mut text)
                    .context("read resources from stdin")?;
            } else {
                text = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
            }
            serde_json::from_slice::<LinuxResources>(&text).context("parse the resources JSON")?
        }
        None => LinuxResources::default(),
    };
    apply_flags(&mut res, a)?;
    Ok(container.update(&res)?)
}

/// runc flags myshim does not apply: the deprecated kernel memory limits are ignored (the
/// warnings returned; runc 1.2+ ignores them too, cgroup v2 and recent v1 kernels have no such
/// limit); Intel RDT is refused (myshim has no resctrl support).
fn unsupported(a: &Update) -> anyhow::Result<Vec<String>> {
    if let Some(flag) = [
        ("--l3-cache-schema", &a.l3_cache_schema),
        ("--mem-bw-schema", &a.mem_bw_schema),
    ]
    .iter()
    .find_map(|(flag, v)| v.is_some().then_some(flag))
    {
        bail!("{flag}: Intel RDT (resctrl) is not supported by myshim");
    }
    Ok([
        ("--kernel-memory", &a.kernel_memory),
        ("--kernel-memory-tcp", &a.kernel_memory_tcp),
    ]
    .iter()
    .filter(|(_, v)| v.is_some())
    .map(|(flag, _)| format!("{flag} is deprecated and ignored (no kernel memory limits)"))
    .collect())
}

/// runc's flags over the resources from `-r` (or none): what is given replaces what is there.
fn apply_flags(res: &mut LinuxResources, a: &Update) -> anyhow::Result<()> {
    // LinuxMemory has no setters in oci-spec 0.7: edit its JSON form.
    let mut mem = serde_json::to_value(res.memory().unwrap_or_default())?;
    let mut mem_set = res.memory().is_some();
    for (key, value) in [
        ("limit", &a.memory),
        ("reservation", &a.memory_reservation),
        ("swap", &a.memory_swap),
    ] {
        if let Some(text) = value {
            mem[key] = parse_bytes(text)?.into();
            mem_set = true;
        }
    }
    // As runc: no memory limit and no word on swap means no swap limit either (v1 refuses a
    // memory+swap limit below an unlimited memory limit).
    if a.memory.is_some() && mem["limit"] == -1 && mem.get("swap").is_none_or(Value::is_null) {
        mem["swap"] = (-1).into();
    }
    if mem_set {
        res.set_memory(Some(
            serde_json::from_value::<LinuxMemory>(mem).context("memory resources")?,
        ));
    }
    let mut cpu = res.cpu().clone().unwrap_or_default();
    let cpu_before = cpu.clone();
    if let Some(q) = a.cpu_quota {
        cpu.set_quota(Some(q));
    }
    if let Some(p) = a.cpu_period {
        cpu.set_period(Some(p));
    }
    if let Some(s) = a.cpu_share {
        cpu.set_shares(Some(s));
    }
    if let Some(c) = &a.cpuset_cpus {
        cpu.set_cpus(Some(c.clone()));
    }
    if let Some(m) = &a.cpuset_mems {
        cpu.set_mems(Some(m.clone()));
    }
    if let Some(p) = a.cpu_rt_period {
        cpu.set_realtime_period(Some(p));
    }
    if let Some(r) = a.cpu_rt_runtime {
        cpu.set_realtime_runtime(Some(r));
    }
    if let Some(b) = a.cpu_burst {
        cpu.set_burst(Some(b));
    }
    if let Some(i) = a.cpu_idle {
        cpu.set_idle(Some(i));
    }
    if cpu != cpu_before || res.cpu().is_some() {
        res.set_cpu(Some::<LinuxCpu>(cpu));
    }
    if let Some(l) = a.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(if l <= 0 { -1 } else { l });
        res.set_pids(Some(pids));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    Ok(())
}

/// Bytes with an optional unit (`k`, `m`, `g`, `t`, powers of 1024, optionally followed by `b`,
/// any case); `-1` means no limit.
pub fn parse_bytes(text: &str) -> anyhow::Result<i64> {
    let t = text.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size {text:?}"))?;
    if n < 0.0 {
        bail!("invalid size {text:?}");
    }
    Ok((n * (1u64 << shift) as f64) as i64)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::args::{Cli, Command};
    use super::*;

    fn update_args(flags: &[&str]) -> Update {
        let argv = ["myshim", "update"].iter().chain(flags).chain(&["c1"]);
        match Cli::try_parse_from(argv).expect("parse").command {
            Some(Command::Update(u)) => u,
            other => panic!("not update: {other:?}"),
        }
    }

    fn resources(flags: &[&str]) -> LinuxResources {
        let mut res = LinuxResources::default();
        apply_flags(&mut res, &update_args(flags)).expect("apply flags");
        res
    }

    #[test]
    fn cpu_flags_reach_linux_cpu() {
        let res = resources(&[
            "--cpu-rt-period",
            "1000000",
            "--cpu-rt-runtime",
            "-1",
            "--cpu-burst",
            "5000",
            "--cpu-idle",
            "1",
            "--cpu-quota",
            "50000",
            "--cpuset-cpus",
            "0",
        ]);
        let cpu = res.cpu().clone().expect("cpu");
        assert_eq!(cpu.realtime_period(), Some(1_000_000));
        assert_eq!(cpu.realtime_runtime(), Some(-1));
        assert_eq!(cpu.burst(), Some(5000));
        assert_eq!(cpu.idle(), Some(1));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        assert_eq!(cpu.period(), None);
        assert!(res.memory().is_none() && res.pids().is_none());
    }

    #[test]
    fn memory_flags_and_unlimited_swap() {
        let res = resources(&["--memory", "64m", "--memory-swap", "128m"]);
        let mem = res.memory().as_ref().expect("memory");
        assert_eq!((mem.limit(), mem.swap()), (Some(64 << 20), Some(128 << 20)));
        let res = resources(&["--memory", "-1"]);
        let mem = res.memory().as_ref().expect("memory");
        assert_eq!((mem.limit(), mem.swap()), (Some(-1), Some(-1)));
        assert!(resources(&["--pids-limit", "5"]).memory().is_none());
    }

    #[test]
    fn flags_override_the_file() {
        let mut res: LinuxResources =
            serde_json::from_str(r#"{"cpu":{"shares":100,"quota":1000},"memory":{"limit":1024}}"#)
                .unwrap();
        apply_flags(&mut res, &update_args(&["--cpu-share", "512"])).unwrap();
        let cpu = res.cpu().clone().unwrap();
        assert_eq!((cpu.shares(), cpu.quota()), (Some(512), Some(1000)));
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(1024));
    }

    #[test]
    fn kernel_memory_is_ignored_and_rdt_refused() {
        let warnings = unsupported(&update_args(&["--kernel-memory", "1m"])).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("--kernel-memory is"),
            "{warnings:?}"
        );
        let warnings = unsupported(&update_args(&[
            "--kernel-memory",
            "1m",
            "--kernel-memory-tcp",
            "1m",
        ]))
        .unwrap();
        assert_eq!(warnings.len(), 2);
        assert!(resources(&["--kernel-memory", "1m"]).memory().is_none());
        for flag in ["--l3-cache-schema", "--mem-bw-schema"] {
            let e = unsupported(&update_args(&[flag, "L3:0=f"])).unwrap_err();
            assert!(e.to_string().contains("Intel RDT"), "{e}");
            assert!(e.to_string().starts_with(flag), "{e}");
        }
        assert!(unsupported(&update_args(&["--memory", "1m"]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("lots").is_err());
    }
}
