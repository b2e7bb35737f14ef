//! `pause`, `resume` and `update`: the container's cgroup. `update` takes an OCI
//! `linux.resources` JSON (`-r FILE`, `-r -` for stdin, as containerd's runc shim sends it) and
//! runc's flags, which override the file.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

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
    use super::parse_bytes;

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
