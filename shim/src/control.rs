//! Pause, Resume, Update and Stats of a task: the runtime's freezer, live resource limits and
//! cgroup statistics behind the task API.
//!
//! Pause and Resume move the init between `Running` and `Paused` while holding the runtime
//! handle (so they cannot interleave) and publish TaskPaused / TaskResumed under the process's
//! state lock. A SIGKILL sent to a paused container thaws it afterwards, as runc does: on cgroup
//! v1 a frozen process does not die until thawed. Other signals stay pending until Resume.

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::ttrpc;
use myshim_runtime::cgroups::{Layout, Stats};
use myshim_runtime::Container;
use oci_spec::runtime::LinuxResources;

use crate::errors;
use crate::events::Events;
use crate::process::{Op, Phase, Process};
use crate::task::Task;

/// The type URL containerd gives the OCI `LinuxResources` it sends in an Update (JSON value):
/// `types.containerd.io/opencontainers/runtime-spec/<major>/LinuxResources`.
pub const LINUX_RESOURCES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// Decode the `resources` of an Update request: an `Any` holding OCI `LinuxResources` as JSON.
/// Other types (Windows resources) and bad JSON are INVALID_ARGUMENT.
pub fn decode_resources(any: Option<&Any>) -> ttrpc::Result<LinuxResources> {
    let any = any.ok_or_else(|| errors::invalid("update: no resources given"))?;
    let known = any.type_url == LINUX_RESOURCES_TYPE_URL
        || (any
            .type_url
            .starts_with("types.containerd.io/opencontainers/runtime-spec/")
            && any.type_url.ends_with("/LinuxResources"));
    if !known {
        return Err(errors::invalid(format!(
            "update: resources of type {:?} are not supported (want {LINUX_RESOURCES_TYPE_URL})",
            any.type_url
        )));
    }
    serde_json::from_slice(&any.value)
        .map_err(|e| errors::invalid(format!("update: decode LinuxResources: {e}")))
}

impl Task {
    fn describe(&self) -> String {
        format!("container {}", self.id)
    }

    /// Freeze every process of the container; TaskPaused once frozen.
    pub fn pause(&self, events: &Events) -> ttrpc::Result<()> {
        let what = self.describe();
        self.init.check(Op::Pause, &what)?;
        self.with_container(|c| {
            c.pause()?;
            if !self.init.set_paused(true, || events.task_paused(&self.id)) {
                log::info!("pause {what}: its init exited meanwhile");
            }
            Ok(())
        })
    }

    /// Thaw the paused container; TaskResumed once thawed.
    pub fn resume(&self, events: &Events) -> ttrpc::Result<()> {
        let what = self.describe();
        self.init.check(Op::Resume, &what)?;
        self.with_container(|c| {
            c.resume()?;
            if !self
                .init
                .set_paused(false, || events.task_resumed(&self.id))
            {
                log::info!("resume {what}: its init exited meanwhile");
            }
            Ok(())
        })
    }

    /// Change the live resource limits (memory, cpu, pids, blkio, ...; device rules are kept).
    pub fn update(&self, resources: &LinuxResources) -> ttrpc::Result<()> {
        if self.init.has_exited() {
            return Err(errors::failed_precondition(format!(
                "{} is stopped: cannot update",
                self.describe()
            )));
        }
        self.with_container(|c| c.update(resources))
    }

    /// The container's cgroup statistics and the cgroup layout they come from.
    pub fn stats(&self) -> ttrpc::Result<(Stats, Layout)> {
        self.with_container(|c| Ok((c.stats()?, c.cgroup_manager().layout())))
    }
}

/// After a signal was sent to the container: a SIGKILL to a paused container thaws it, or on
/// cgroup v1 the processes would stay frozen, not dead (runc does the same). The init then
/// counts as running again until its exit arrives; no TaskResumed is published.
pub fn after_kill(c: &Container, init: &Process, signal: i32) {
    if signal != libc::SIGKILL || init.phase() != Phase::Paused {
        return;
    }
    if let Err(e) = c.cgroup_manager().thaw() {
        log::warn!("container {}: thaw after SIGKILL: {e:#}", c.id());
        return;
    }
    init.set_paused(false, || {});
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::ttrpc::Code;

    use super::*;

    fn any(type_url: &str, value: &str) -> Any {
        Any {
            type_url: type_url.into(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn code(r: ttrpc::Result<LinuxResources>) -> Code {
        match r {
            Err(ttrpc::Error::RpcStatus(s)) => s.code(),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn decodes_what_containerd_sends() {
        // What containerd's client marshals for `WithResources` (Go's JSON of LinuxResources).
        let json = r#"{"devices":[{"allow":false,"access":"rwm"}],
            "memory":{"limit":33554432,"swap":67108864},
            "cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0-1"},
            "pids":{"limit":42},
            "blockIO":{"weight":300}}"#;
        let r = decode_resources(Some(&any(LINUX_RESOURCES_TYPE_URL, json))).unwrap();
        let mem = r.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(33_554_432));
        assert_eq!(mem.swap(), Some(67_108_864));
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 42);
        assert_eq!(r.block_io().as_ref().unwrap().weight(), Some(300));
        assert_eq!(r.devices().as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn partial_and_empty_resources() {
        let r = decode_resources(Some(&any(
            LINUX_RESOURCES_TYPE_URL,
            r#"{"cpu":{"quota":-1}}"#,
        )))
        .unwrap();
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(-1));
        assert!(r.memory().is_none() && r.pids().is_none());
        let r = decode_resources(Some(&any(LINUX_RESOURCES_TYPE_URL, "{}"))).unwrap();
        assert!(r.memory().is_none() && r.cpu().is_none());
        // a later spec major version keeps the same JSON
        let url = "types.containerd.io/opencontainers/runtime-spec/2/LinuxResources";
        assert!(decode_resources(Some(&any(url, "{}"))).is_ok());
    }

    #[test]
    fn refuses_other_types_and_bad_json() {
        assert_eq!(code(decode_resources(None)), Code::INVALID_ARGUMENT);
        let windows = "types.containerd.io/opencontainers/runtime-spec/1/WindowsResources";
        assert_eq!(
            code(decode_resources(Some(&any(windows, "{}")))),
            Code::INVALID_ARGUMENT
        );
        assert_eq!(
            code(decode_resources(Some(&any("", "{}")))),
            Code::INVALID_ARGUMENT
        );
        assert_eq!(
            code(decode_resources(Some(&any(
                LINUX_RESOURCES_TYPE_URL,
                "{not json"
            )))),
            Code::INVALID_ARGUMENT
        );
        assert_eq!(
            code(decode_resources(Some(&any(
                LINUX_RESOURCES_TYPE_URL,
                r#"{"memory":{"limit":"lots"}}"#
            )))),
            Code::INVALID_ARGUMENT
        );
    }
}
