//! Decoding of the task options containerd attaches to CreateTask (`req.options`).
//!
//! Two message types arrive here: `containerd.runc.v1.Options` (the runc shim's options, sent by
//! containerd 1.7/2.x and CRI) and `containerd.linux.runc.CreateOptions` (what containerd 1.6's
//! client sends to any shim that is not runc, e.g. for `ctr run --no-pivot`). The protos crate
//! lacks the latter, so it is decoded field by field from the wire format. Fields this shim has
//! no use for are ignored; settings it cannot honour are refused.

use containerd_shim::api::Options as RuncOptions;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{CodedInputStream, Message};

/// `containerd.runc.v1.Options`
pub const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
/// `containerd.linux.runc.CreateOptions` (containerd 1.6 `runtime/linux/runctypes`)
pub const LINUX_CREATE_OPTIONS: &str = "containerd.linux.runc.CreateOptions";

/// What the shim takes from the task options.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TaskOptions {
    /// Owner uid for the container's stdio fifos and pipes (0: leave as is).
    pub io_uid: u32,
    /// Owner gid for the container's stdio fifos and pipes (0: leave as is).
    pub io_gid: u32,
    /// The cgroup the shim daemon itself joins (runc's `shim_cgroup`; empty: stay put).
    pub shim_cgroup: String,
    /// The systemd cgroup driver was asked for.
    pub systemd_cgroup: bool,
    /// Where a restore's images are (runc's `criu_image_path`; empty: the request's checkpoint).
    pub criu_image_path: String,
    /// criu's work directory and logs for a restore (runc's `criu_work_path`).
    pub criu_work_path: String,
}

impl TaskOptions {
    /// The owner to give the stdio files, if the options ask for one.
    pub fn io_owner(&self) -> Option<(u32, u32)> {
        (self.io_uid != 0 || self.io_gid != 0).then_some((self.io_uid, self.io_gid))
    }
}

/// Why the options were refused.
#[derive(Debug, PartialEq, Eq)]
pub enum OptionsError {
    /// Well-formed, but asks for something this shim does not do.
    Unsupported(String),
    /// Unknown message type or undecodable bytes.
    Invalid(String),
}

impl std::fmt::Display for OptionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionsError::Unsupported(m) | OptionsError::Invalid(m) => f.write_str(m),
        }
    }
}

/// Whether `type_url` names an options message this shim reads.
pub fn is_known_type(type_url: &str) -> bool {
    matches!(
        type_url.rsplit('/').next(),
        Some(RUNC_OPTIONS | LINUX_CREATE_OPTIONS)
    )
}

/// Decode `req.options` for a task; absent or empty options give the defaults. Every setting
/// read is honoured (`SystemdCgroup` selects the systemd cgroup driver).
pub fn decode(any: Option<&Any>) -> Result<TaskOptions, OptionsError> {
    parse(any)
}

/// Decode the options as they are, without judging them (the `start` action reads
/// `shim_cgroup` from them).
pub fn parse(any: Option<&Any>) -> Result<TaskOptions, OptionsError> {
    let Some(any) = any else {
        return Ok(TaskOptions::default());
    };
    // typeurl may or may not prefix the message name with a host ("type.googleapis.com/").
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    match name {
        "" if any.value.is_empty() => Ok(TaskOptions::default()),
        RUNC_OPTIONS => decode_runc(&any.value),
        LINUX_CREATE_OPTIONS => decode_linux_create(&any.value),
        _ => Err(OptionsError::Invalid(format!(
            "unsupported task options type {:?} (expected {RUNC_OPTIONS} or {LINUX_CREATE_OPTIONS})",
            any.type_url
        ))),
    }
}

fn decode_runc(bytes: &[u8]) -> Result<TaskOptions, OptionsError> {
    let opts = RuncOptions::parse_from_bytes(bytes)
        .map_err(|e| OptionsError::Invalid(format!("decode {RUNC_OPTIONS}: {e}")))?;
    Ok(TaskOptions {
        io_uid: opts.io_uid,
        io_gid: opts.io_gid,
        shim_cgroup: opts.shim_cgroup,
        systemd_cgroup: opts.systemd_cgroup,
        criu_image_path: opts.criu_image_path,
        criu_work_path: opts.criu_work_path,
    })
}

/// `CreateOptions` field numbers this shim reads (`uint32`s varint encoded, a string).
const CREATE_SHIM_CGROUP: u32 = 9;
const CREATE_IO_UID: u32 = 10;
const CREATE_IO_GID: u32 = 11;
/// Wire types of varint and length-delimited fields.
const WIRE_VARINT: u32 = 0;
const WIRE_LEN: u32 = 2;

fn decode_linux_create(bytes: &[u8]) -> Result<TaskOptions, OptionsError> {
    let bad = |e: containerd_shim::protos::protobuf::Error| {
        OptionsError::Invalid(format!("decode {LINUX_CREATE_OPTIONS}: {e}"))
    };
    let mut opts = TaskOptions::default();
    let mut is = CodedInputStream::from_bytes(bytes);
    while let Some(tag) = is.read_raw_tag_or_eof().map_err(bad)? {
        let (field, wire) = (tag >> 3, tag & 7);
        match (field, wire) {
            (CREATE_IO_UID, WIRE_VARINT) => opts.io_uid = is.read_uint32().map_err(bad)?,
            (CREATE_IO_GID, WIRE_VARINT) => opts.io_gid = is.read_uint32().map_err(bad)?,
            (CREATE_SHIM_CGROUP, WIRE_LEN) => opts.shim_cgroup = is.read_string().map_err(bad)?,
            _ => containerd_shim::protos::protobuf::rt::skip_field_for_tag(tag, &mut is)
                .map_err(bad)?,
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::protobuf::CodedOutputStream;

    use super::*;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        Any {
            type_url: type_url.into(),
            value,
            ..Default::default()
        }
    }

    /// A `CreateOptions` as containerd 1.6 encodes it: every field kind, io ids in the middle.
    fn linux_create_options(io_uid: u32, io_gid: u32) -> Vec<u8> {
        let mut buf = Vec::new();
        {
            let mut os = CodedOutputStream::vec(&mut buf);
            os.write_bool(1, true).unwrap(); // no_pivot_root
            os.write_bool(4, false).unwrap(); // terminal
            os.write_string(6, "network").unwrap(); // empty_namespaces
            os.write_string(6, "ipc").unwrap();
            os.write_string(7, "soft").unwrap(); // cgroups_mode
            os.write_string(9, "/shim").unwrap(); // shim_cgroup
            os.write_uint32(CREATE_IO_UID, io_uid).unwrap();
            os.write_uint32(CREATE_IO_GID, io_gid).unwrap();
            os.write_string(12, "/work").unwrap(); // criu_work_path
            os.write_fixed64(99, 7).unwrap(); // unknown field from a newer containerd
            os.flush().unwrap();
        }
        buf
    }

    #[test]
    fn absent_or_empty_options_are_defaults() {
        assert_eq!(decode(None), Ok(TaskOptions::default()));
        assert_eq!(decode(Some(&Any::default())), Ok(TaskOptions::default()));
        assert_eq!(TaskOptions::default().io_owner(), None);
    }

    #[test]
    fn runc_options_give_io_owner() {
        let opts = RuncOptions {
            io_uid: 1000,
            io_gid: 1001,
            binary_name: "runc".into(),
            root: "/run/x".into(),
            no_pivot_root: true,
            ..Default::default()
        };
        let got = decode(Some(&any(RUNC_OPTIONS, opts.write_to_bytes().unwrap()))).unwrap();
        assert_eq!(got.io_owner(), Some((1000, 1001)));
        // with a type URL host prefix
        let url = format!("type.googleapis.com/{RUNC_OPTIONS}");
        let got = decode(Some(&any(&url, opts.write_to_bytes().unwrap()))).unwrap();
        assert_eq!(got.io_uid, 1000);
        assert!(is_known_type(&url));
        assert!(is_known_type(LINUX_CREATE_OPTIONS));
        assert!(!is_known_type("containerd.io/cri.v1.PodSandboxConfig"));
    }

    #[test]
    fn shim_cgroup_is_read_from_both_types() {
        let opts = RuncOptions {
            shim_cgroup: "/containerd/shim".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        let got = parse(Some(&any(RUNC_OPTIONS, opts.write_to_bytes().unwrap()))).unwrap();
        assert_eq!(got.shim_cgroup, "/containerd/shim");
        assert!(got.systemd_cgroup);
        let got = parse(Some(&any(LINUX_CREATE_OPTIONS, linux_create_options(0, 0)))).unwrap();
        assert_eq!(got.shim_cgroup, "/shim");
    }

    #[test]
    fn runc_options_take_systemd_cgroup() {
        let opts = RuncOptions {
            systemd_cgroup: true,
            ..Default::default()
        };
        let got = decode(Some(&any(RUNC_OPTIONS, opts.write_to_bytes().unwrap()))).unwrap();
        assert!(got.systemd_cgroup);
    }

    #[test]
    fn linux_create_options_give_io_owner() {
        let got = decode(Some(&any(LINUX_CREATE_OPTIONS, linux_create_options(5, 6)))).unwrap();
        assert_eq!(
            got,
            TaskOptions {
                io_uid: 5,
                io_gid: 6,
                shim_cgroup: "/shim".into(),
                ..Default::default()
            }
        );
        let got = decode(Some(&any(LINUX_CREATE_OPTIONS, Vec::new()))).unwrap();
        assert_eq!(got, TaskOptions::default());
    }

    #[test]
    fn garbage_and_unknown_types_are_invalid() {
        let err = decode(Some(&any(LINUX_CREATE_OPTIONS, vec![0x52, 0x05, 0x01]))).unwrap_err();
        assert!(matches!(err, OptionsError::Invalid(ref m) if m.contains(LINUX_CREATE_OPTIONS)));
        let err = decode(Some(&any(RUNC_OPTIONS, vec![0xff]))).unwrap_err();
        assert!(matches!(err, OptionsError::Invalid(_)));
        let err = decode(Some(&any("example.Other", vec![]))).unwrap_err();
        assert!(matches!(err, OptionsError::Invalid(ref m) if m.contains("example.Other")));
    }
}
