//! What containerd writes to the `start` action's stdin, and what `start` answers on stdout.
//!
//! | containerd | stdin at `start`                         | `MAX_SHIM_VERSION` | answer we give                         |
//! |------------|------------------------------------------|--------------------|----------------------------------------|
//! | 1.6        | the runtime options `Any` (or nothing)   | unset              | the plain address                      |
//! | 1.7 – 2.2  | the runtime options `Any` (or nothing)   | `2`                | `{"version":2,"address":…,"protocol":"ttrpc"}` |
//! | 2.3 and on | a `BootstrapParams` message (options in its extensions, its version, log level, socket dir) | `2` | the same JSON with `"version":3` when it says it is 2.x or later |
//!
//! containerd 1.7 refuses version 3, and 2.0 – 2.2 cannot be told apart from 1.7, so only a
//! `BootstrapParams` that names containerd 2.x or later gets version 3 (the task API v3, served
//! next to v2 by the daemon). A `BootstrapParams` is recognised as containerd's own shims
//! recognise it: it decodes, and its id and namespace are those of the command line.

use anyhow::{bail, Context};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{rt, CodedInputStream, Message};

/// Wire types used below.
const WIRE_VARINT: u32 = 0;
const WIRE_LEN: u32 = 2;

/// Most the `start` action reads from stdin (containerd's own shims stop at 10 MiB too).
pub const STDIN_LIMIT: u64 = 10 << 20;

/// `containerd.runtime.bootstrap.v1.BootstrapParams`, the fields this shim uses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BootstrapParams {
    pub instance_id: String,
    pub namespace: String,
    /// INFO = 0, more verbose levels negative (DEBUG = -4, TRACE = -8).
    pub log_level: i32,
    pub containerd_version: String,
    pub ttrpc_address: String,
    pub grpc_address: String,
    pub containerd_binary: String,
    /// The extensions' `Any`s (the runtime options among them).
    pub extensions: Vec<Any>,
    pub socket_dir: Option<String>,
}

/// The log level at or below which the shim logs at debug level.
pub const LOG_LEVEL_DEBUG: i32 = -4;

impl BootstrapParams {
    /// Whether containerd asks for debug logs.
    pub fn debug(&self) -> bool {
        self.log_level <= LOG_LEVEL_DEBUG
    }

    /// The containerd major version it announces (0 when unreadable).
    pub fn containerd_major(&self) -> u32 {
        self.containerd_version
            .trim_start_matches('v')
            .split(['.', '-', '+'])
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

/// The decoded stdin of `start`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StartInput {
    /// containerd 2.3+'s parameters, if that is what came.
    pub params: Option<BootstrapParams>,
    /// The runtime options, from either form.
    pub options: Option<Any>,
}

fn decode_params(
    bytes: &[u8],
) -> Result<BootstrapParams, containerd_shim::protos::protobuf::Error> {
    let mut p = BootstrapParams::default();
    let mut is = CodedInputStream::from_bytes(bytes);
    while let Some(tag) = is.read_raw_tag_or_eof()? {
        match (tag >> 3, tag & 7) {
            (1, WIRE_LEN) => p.instance_id = is.read_string()?,
            (2, WIRE_LEN) => p.namespace = is.read_string()?,
            (3, WIRE_VARINT) => p.log_level = is.read_int32()?,
            (4, WIRE_LEN) => p.containerd_version = is.read_string()?,
            (5, WIRE_LEN) => p.ttrpc_address = is.read_string()?,
            (6, WIRE_LEN) => p.grpc_address = is.read_string()?,
            (7, WIRE_LEN) => p.containerd_binary = is.read_string()?,
            (8, WIRE_LEN) => {
                // Extension { google.protobuf.Any value = 1; }
                let ext = is.read_bytes()?;
                let mut es = CodedInputStream::from_bytes(&ext);
                while let Some(t) = es.read_raw_tag_or_eof()? {
                    if (t >> 3, t & 7) == (1, WIRE_LEN) {
                        p.extensions.push(Any::parse_from_bytes(&es.read_bytes()?)?);
                    } else {
                        rt::skip_field_for_tag(t, &mut es)?;
                    }
                }
            }
            (9, WIRE_LEN) => p.socket_dir = Some(is.read_string()?),
            _ => rt::skip_field_for_tag(tag, &mut is)?,
        }
    }
    Ok(p)
}

/// Decode the `start` action's stdin for the shim `id` in `namespace`.
pub fn decode_start_input(bytes: &[u8], id: &str, namespace: &str) -> anyhow::Result<StartInput> {
    if bytes.is_empty() {
        return Ok(StartInput::default());
    }
    if let Ok(params) = decode_params(bytes) {
        if params.instance_id == id && params.namespace == namespace {
            let options = params
                .extensions
                .iter()
                .find(|a| crate::options::is_known_type(&a.type_url))
                .cloned();
            return Ok(StartInput {
                params: Some(params),
                options,
            });
        }
    }
    let options = Any::parse_from_bytes(bytes)
        .context("decode the runtime options from stdin (neither BootstrapParams nor an Any)")?;
    Ok(StartInput {
        params: None,
        options: Some(options),
    })
}

/// How `start` answers containerd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// containerd 1.6: the address alone.
    Plain,
    /// containerd 1.7+: the JSON bootstrap with this task API version.
    Json(u32),
}

impl Answer {
    /// Choose from the environment's `MAX_SHIM_VERSION` and what came on stdin.
    pub fn choose(max_shim_version: Option<&str>, params: Option<&BootstrapParams>) -> Answer {
        let Some(max) = max_shim_version else {
            return Answer::Plain;
        };
        let max: u32 = max.trim().parse().unwrap_or(2);
        if max < 2 {
            return Answer::Plain;
        }
        match params {
            Some(p) if p.containerd_major() >= 2 => Answer::Json(3),
            _ => Answer::Json(2),
        }
    }

    /// The bytes to print for `address`.
    pub fn render(self, address: &str) -> anyhow::Result<String> {
        match self {
            Answer::Plain => Ok(address.to_string()),
            Answer::Json(version) => {
                if version < 2 {
                    bail!("bootstrap version {version} is below 2");
                }
                Ok(serde_json::json!({
                    "version": version,
                    "address": address,
                    "protocol": "ttrpc",
                })
                .to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::protobuf::CodedOutputStream;

    use super::*;

    fn any(type_url: &str, value: &[u8]) -> Any {
        Any {
            type_url: type_url.into(),
            value: value.to_vec(),
            ..Default::default()
        }
    }

    /// A `BootstrapParams` as containerd 2.3 writes it.
    fn params_bytes(id: &str, ns: &str, version: &str, level: i32, opts: Option<&Any>) -> Vec<u8> {
        let mut buf = Vec::new();
        {
            let mut os = CodedOutputStream::vec(&mut buf);
            os.write_string(1, id).unwrap();
            os.write_string(2, ns).unwrap();
            os.write_int32(3, level).unwrap();
            os.write_string(4, version).unwrap();
            os.write_string(5, "/run/containerd/containerd.sock.ttrpc")
                .unwrap();
            os.write_string(6, "/run/containerd/containerd.sock")
                .unwrap();
            os.write_string(7, "/usr/bin/containerd").unwrap();
            // an extension that is not ours first
            let other = any("containerd.io/cri.v1.PodSandboxConfig", b"\x0a\x01x");
            let mut ext = Vec::new();
            {
                let mut es = CodedOutputStream::vec(&mut ext);
                es.write_bytes(1, &other.write_to_bytes().unwrap()).unwrap();
                es.flush().unwrap();
            }
            os.write_bytes(8, &ext).unwrap();
            if let Some(o) = opts {
                let mut ext = Vec::new();
                {
                    let mut es = CodedOutputStream::vec(&mut ext);
                    es.write_bytes(1, &o.write_to_bytes().unwrap()).unwrap();
                    es.flush().unwrap();
                }
                os.write_bytes(8, &ext).unwrap();
            }
            os.write_string(9, "/run/k/s").unwrap();
            os.write_uint64(99, 1).unwrap(); // a field from a newer containerd
            os.flush().unwrap();
        }
        buf
    }

    #[test]
    fn bootstrap_params_are_recognised() {
        let opts = any("containerd.runc.v1.Options", b"\x52\x05/shim");
        let bytes = params_bytes("c1", "k8s.io", "v2.3.0", -4, Some(&opts));
        let got = decode_start_input(&bytes, "c1", "k8s.io").unwrap();
        let p = got.params.as_ref().unwrap();
        assert_eq!(p.containerd_version, "v2.3.0");
        assert_eq!(p.containerd_major(), 2);
        assert!(p.debug());
        assert_eq!(p.socket_dir.as_deref(), Some("/run/k/s"));
        assert_eq!(p.ttrpc_address, "/run/containerd/containerd.sock.ttrpc");
        assert_eq!(p.extensions.len(), 2);
        assert_eq!(got.options, Some(opts));
        // info level, no options
        let bytes = params_bytes("c1", "k8s.io", "2.3.1", 0, None);
        let got = decode_start_input(&bytes, "c1", "k8s.io").unwrap();
        assert!(!got.params.as_ref().unwrap().debug());
        assert_eq!(got.options, None);
    }

    #[test]
    fn options_any_of_older_containerds() {
        let opts = any("containerd.runc.v1.Options", b"\x52\x05/shim");
        let got = decode_start_input(&opts.write_to_bytes().unwrap(), "c1", "ns").unwrap();
        assert_eq!(got.params, None);
        assert_eq!(got.options, Some(opts));
        assert_eq!(
            decode_start_input(b"", "c1", "ns").unwrap(),
            StartInput::default()
        );
        // params for another shim are not taken as ours (protobuf reads them as some Any)
        let bytes = params_bytes("other", "ns", "2.3.0", 0, None);
        assert_eq!(decode_start_input(&bytes, "c1", "ns").unwrap().params, None);
        assert!(decode_start_input(b"\xff\xff", "c1", "ns").is_err());
    }

    #[test]
    fn answer_per_containerd_generation() {
        let p2 = BootstrapParams {
            containerd_version: "2.3.0".into(),
            ..Default::default()
        };
        let p1 = BootstrapParams {
            containerd_version: "1.7.24".into(),
            ..Default::default()
        };
        assert_eq!(Answer::choose(None, None), Answer::Plain);
        assert_eq!(Answer::choose(None, Some(&p2)), Answer::Plain);
        assert_eq!(Answer::choose(Some("2"), None), Answer::Json(2));
        assert_eq!(Answer::choose(Some("2"), Some(&p1)), Answer::Json(2));
        assert_eq!(Answer::choose(Some("2"), Some(&p2)), Answer::Json(3));
        assert_eq!(Answer::choose(Some("1"), None), Answer::Plain);
        assert_eq!(Answer::Plain.render("unix:///s/x").unwrap(), "unix:///s/x");
        let json: serde_json::Value =
            serde_json::from_str(&Answer::Json(3).render("unix:///s/x").unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"version":3,"address":"unix:///s/x","protocol":"ttrpc"})
        );
    }

    #[test]
    fn containerd_major_parsing() {
        let major = |v: &str| {
            BootstrapParams {
                containerd_version: v.into(),
                ..Default::default()
            }
            .containerd_major()
        };
        assert_eq!(major("v2.3.0"), 2);
        assert_eq!(major("2.10.1-rc.1"), 2);
        assert_eq!(major("3.0.0+dev"), 3);
        assert_eq!(major(""), 0);
        assert_eq!(major("dev"), 0);
    }
}
