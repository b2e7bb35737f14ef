//! A minimal client of containerd's gRPC API, for the few task calls that `ctr` 1.6 cannot make:
//! `Tasks/Update` (ctr 1.6 has no `task update`) and a `Tasks/Create` that is not followed by a
//! `Start` (so that a task can be seen in the CREATED state).
//!
//! No gRPC crate is available to the tests (only serde_json), so this speaks just enough
//! HTTP/2 over containerd's unix socket for one unary call per connection: the client preface,
//! an empty SETTINGS frame, one HEADERS frame (HPACK literals without indexing and without
//! Huffman coding, which every HPACK decoder accepts), one DATA frame carrying the
//! length-prefixed protobuf request, then frames are read until the stream ends. The protobuf
//! messages are encoded by hand (field numbers from containerd's
//! api/services/tasks/v1/tasks.proto).
//!
//! A call succeeded when the server sent a response message (a DATA frame on the stream): gRPC
//! servers answer a failed call with trailers only. The error detail (`grpc-message`) is
//! Huffman-coded by containerd's HPACK encoder and is not decoded here; the containerd log has
//! it (and [`super::containerd_log`] shows it in test failures).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{env, NAMESPACE};

/// Type URL under which containerd's Go client sends an OCI `LinuxResources` (JSON) in an Any.
pub const LINUX_RESOURCES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

// --- protobuf encoding ------------------------------------------------------------------------

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (string, bytes, embedded message).
pub fn pb_bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    varint(out, u64::from(field) << 3 | 2);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn pb_read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The varint field `field` of a message (e.g. a pid), if present.
pub fn pb_varint_field(msg: &[u8], field: u32) -> Option<u64> {
    let mut pos = 0;
    while pos < msg.len() {
        let key = pb_read_varint(msg, &mut pos)?;
        let (f, wire) = ((key >> 3) as u32, key & 7);
        match wire {
            0 => {
                let v = pb_read_varint(msg, &mut pos)?;
                if f == field {
                    return Some(v);
                }
            }
            1 => pos += 8,
            2 => {
                let len = pb_read_varint(msg, &mut pos)? as usize;
                pos += len;
            }
            5 => pos += 4,
            _ => return None,
        }
    }
    None
}

// --- HTTP/2 -----------------------------------------------------------------------------------

const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// HPACK integer with an N-bit prefix (RFC 7541 5.1); `first` holds the bits above the prefix.
fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut v: usize) {
    let max = (1usize << prefix_bits) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// "Literal Header Field without Indexing — New Name", both strings raw (no Huffman).
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

/// One unary call of `method` (e.g. `/containerd.services.tasks.v1.Tasks/Update`) on the
/// test's containerd, in the tests' namespace. Returns the response message (protobuf bytes).
pub fn unary(method: &str, request: &[u8]) -> Result<Vec<u8>, String> {
    unary_at(&env().address, NAMESPACE, method, request)
}

pub fn unary_at(
    address: &Path,
    namespace: &str,
    method: &str,
    request: &[u8],
) -> Result<Vec<u8>, String> {
    let what = |e: std::io::Error| format!("{method} on {}: {e}", address.display());
    let mut s = UnixStream::connect(address).map_err(what)?;
    s.set_read_timeout(Some(CALL_TIMEOUT)).map_err(what)?;
    s.set_write_timeout(Some(CALL_TIMEOUT)).map_err(what)?;

    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, FRAME_SETTINGS, 0, 0, &[]);
    let mut headers = Vec::new();
    for (k, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", method),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("containerd-namespace", namespace),
    ] {
        hpack_literal(&mut headers, k, v);
    }
    frame(&mut out, FRAME_HEADERS, FLAG_END_HEADERS, 1, &headers);
    let mut body = vec![0u8]; // not compressed
    body.extend_from_slice(&(request.len() as u32).to_be_bytes());
    body.extend_from_slice(request);
    frame(&mut out, FRAME_DATA, FLAG_END_STREAM, 1, &body);
    s.write_all(&out).map_err(what)?;

    let mut data = Vec::new();
    loop {
        let mut h = [0u8; 9];
        s.read_exact(&mut h).map_err(what)?;
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).map_err(what)?;
        match kind {
            FRAME_SETTINGS if flags & FLAG_ACK == 0 => {
                let mut ack = Vec::new();
                frame(&mut ack, FRAME_SETTINGS, FLAG_ACK, 0, &[]);
                s.write_all(&ack).map_err(what)?;
            }
            FRAME_PING if flags & FLAG_ACK == 0 => {
                let mut ack = Vec::new();
                frame(&mut ack, FRAME_PING, FLAG_ACK, 0, &p);
                s.write_all(&ack).map_err(what)?;
            }
            FRAME_GOAWAY => return Err(format!("{method}: the server sent GOAWAY")),
            FRAME_RST_STREAM if stream == 1 => {
                return Err(format!("{method}: the server reset the stream"))
            }
            FRAME_DATA if stream == 1 => {
                let mut payload = &p[..];
                if flags & FLAG_PADDED != 0 && !payload.is_empty() {
                    let pad = payload[0] as usize;
                    payload = &payload[1..payload.len().saturating_sub(pad).max(1)];
                }
                data.extend_from_slice(payload);
                if flags & FLAG_END_STREAM != 0 {
                    break;
                }
            }
            FRAME_HEADERS if stream == 1 && flags & FLAG_END_STREAM != 0 => break,
            _ => {}
        }
    }
    if data.len() < 5 {
        return Err(format!(
            "{method} failed: containerd answered without a response message (the error is in \
             containerd's log)"
        ));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    data.get(5..5 + len)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format!("{method}: truncated response"))
}

// --- the calls the tests need -------------------------------------------------------------------

/// `Tasks/Update` of container `id` with the OCI `LinuxResources` `resources` (JSON), as
/// containerd's Go client sends it (what `ctr task update` would do if ctr 1.6 had it).
pub fn task_update(id: &str, resources: &serde_json::Value) -> Result<(), String> {
    let mut any = Vec::new();
    pb_bytes(&mut any, 1, LINUX_RESOURCES_TYPE_URL.as_bytes());
    pb_bytes(&mut any, 2, resources.to_string().as_bytes());
    let mut req = Vec::new();
    pb_bytes(&mut req, 1, id.as_bytes()); // container_id
    pb_bytes(&mut req, 2, &any); // resources
    unary("/containerd.services.tasks.v1.Tasks/Update", &req).map(|_| ())
}

/// `Tasks/Create` of the task of container `id` (created with `ctr containers create`), no
/// rootfs mounts (the spec's root must be a path), no stdio (null IO). Returns the task's pid.
pub fn task_create(id: &str) -> Result<u32, String> {
    let mut req = Vec::new();
    pb_bytes(&mut req, 1, id.as_bytes()); // container_id
    let resp = unary("/containerd.services.tasks.v1.Tasks/Create", &req)?;
    Ok(pb_varint_field(&resp, 2).unwrap_or(0) as u32) // CreateTaskResponse.pid
}

/// Type URL of runc's runtime options (`containerd.runc.v1.Options`), which the CRI plugin and
/// `ctr --runc-systemd-cgroup` send for the runc runtime; myshim reads them too.
pub const RUNC_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";

/// `Tasks/Create` as [`task_create`], with runc's options carrying `SystemdCgroup = true`
/// (`containerd.runc.v1.Options.systemd_cgroup`, field 9) in the request's `options`.
pub fn task_create_systemd_cgroup(id: &str) -> Result<u32, String> {
    let mut any = Vec::new();
    pb_bytes(&mut any, 1, RUNC_OPTIONS_TYPE_URL.as_bytes());
    pb_bytes(&mut any, 2, &[9 << 3, 1]); // systemd_cgroup = true (varint)
    let mut req = Vec::new();
    pb_bytes(&mut req, 1, id.as_bytes()); // container_id
    pb_bytes(&mut req, 9, &any); // options
    let resp = unary("/containerd.services.tasks.v1.Tasks/Create", &req)?;
    Ok(pb_varint_field(&resp, 2).unwrap_or(0) as u32)
}

/// `Tasks/Start` of the task of container `id` (its init process). Returns the pid.
pub fn task_start(id: &str) -> Result<u32, String> {
    let mut req = Vec::new();
    pb_bytes(&mut req, 1, id.as_bytes()); // container_id
    let resp = unary("/containerd.services.tasks.v1.Tasks/Start", &req)?;
    Ok(pb_varint_field(&resp, 1).unwrap_or(0) as u32) // StartResponse.pid
}

/// `Tasks/CloseIO` of the init of container `id` with `stdin` set: the process's stdin is closed
/// (what containerd's client does when its input ends).
pub fn task_close_stdin(id: &str) -> Result<(), String> {
    let mut req = Vec::new();
    pb_bytes(&mut req, 1, id.as_bytes()); // container_id
    req.extend_from_slice(&[3 << 3, 1]); // stdin = true (field 3, varint)
    unary("/containerd.services.tasks.v1.Tasks/CloseIO", &req).map(|_| ())
}
