//! A compiled filter: the BPF program and the flags to install it with. It crosses the init pipe
//! as JSON (the program as hex, 16 digits per instruction) and is installed by the init with a
//! plain `seccomp(2)` call.

use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::anyhow;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A compiled filter, ready to install.
#[derive(Clone, Serialize, Deserialize)]
pub struct Filter {
    #[serde(serialize_with = "to_hex", deserialize_with = "from_hex")]
    pub(super) program: Vec<libc::sock_filter>,
    pub(super) flags: libc::c_ulong,
    pub(super) notify: bool,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .field("notify", &self.notify)
            .finish()
    }
}

impl Filter {
    /// Number of BPF instructions.
    pub fn instructions(&self) -> usize {
        self.program.len()
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits it is installed with (besides NEW_LISTENER).
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }

    /// Whether a rule notifies a listener: installing returns the listener's fd.
    pub fn notify(&self) -> bool {
        self.notify
    }

    /// Install the filter on the calling thread. The thread must have no_new_privs set or
    /// CAP_SYS_ADMIN; the filter is inherited across fork and execve and cannot be removed.
    /// Returns the notify fd (close-on-exec) when the filter has a notify rule.
    pub fn install(&self) -> anyhow::Result<Option<OwnedFd>> {
        let prog = libc::sock_fprog {
            len: u16::try_from(self.program.len())
                .map_err(|_| anyhow!("install the seccomp filter: program too long"))?,
            // The kernel only reads the program.
            filter: self.program.as_ptr().cast_mut(),
        };
        let flags = if self.notify {
            self.flags | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        } else {
            self.flags
        };
        // SAFETY: `prog` points to `self.program`, which outlives the call; the kernel copies
        // the program and writes nothing to user memory.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            let hint = if err.raw_os_error() == Some(libc::EACCES) {
                " (without noNewPrivileges only a process with CAP_SYS_ADMIN may install one)"
            } else {
                ""
            };
            return Err(anyhow!("install the seccomp filter: {err}{hint}"));
        }
        if !self.notify {
            return Ok(None);
        }
        let fd = i32::try_from(rc).map_err(|_| anyhow!("seccomp returned fd {rc}"))?;
        // SAFETY: with NEW_LISTENER the kernel returned a new fd (close-on-exec) that nothing
        // else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// Whether the kernel knows a `SECCOMP_FILTER_FLAG_*` bit (asked once per flag and process).
pub(super) fn flag_supported(flag: libc::c_ulong) -> bool {
    static KNOWN: std::sync::Mutex<Vec<(libc::c_ulong, bool)>> = std::sync::Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, yes)) = known.iter().find(|(f, _)| *f == flag) {
        return *yes;
    }
    let yes = ask_kernel(flag);
    known.push((flag, yes));
    yes
}

/// The kernel checks the flags before it reads the program, so a null program tells: EINVAL
/// for an unknown flag, EFAULT otherwise.
fn ask_kernel(flag: libc::c_ulong) -> bool {
    // SAFETY: with a null program the kernel either refuses the flags or fails to read the
    // program; nothing is installed and no memory of ours is touched.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flag,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    !(rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL))
}

/// One instruction as 8 bytes, in `struct sock_filter` order, little-endian.
fn encode(i: &libc::sock_filter) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..2].copy_from_slice(&i.code.to_le_bytes());
    b[2] = i.jt;
    b[3] = i.jf;
    b[4..].copy_from_slice(&i.k.to_le_bytes());
    b
}

fn decode(b: &[u8; 8]) -> libc::sock_filter {
    libc::sock_filter {
        code: u16::from_le_bytes([b[0], b[1]]),
        jt: b[2],
        jf: b[3],
        k: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    }
}

/// Instructions from the bytes libseccomp exports (native byte order).
pub(super) fn from_native_bytes(bytes: &[u8]) -> anyhow::Result<Vec<libc::sock_filter>> {
    if !bytes.len().is_multiple_of(8) {
        return Err(anyhow!("BPF program of {} bytes", bytes.len()));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

fn to_hex<S: Serializer>(program: &[libc::sock_filter], s: S) -> Result<S::Ok, S::Error> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(program.len() * 16);
    for i in program {
        for b in encode(i) {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 15)]));
        }
    }
    s.serialize_str(&out)
}

fn from_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<libc::sock_filter>, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(d)?;
    let digit = |c: u8| -> Result<u8, D::Error> {
        char::from(c)
            .to_digit(16)
            .map(|v| v as u8)
            .ok_or_else(|| D::Error::custom("BPF program: not a hex digit"))
    };
    if !text.len().is_multiple_of(16) {
        return Err(D::Error::custom("BPF program: truncated instruction"));
    }
    text.as_bytes()
        .chunks_exact(16)
        .map(|insn| {
            let mut b = [0u8; 8];
            for (k, pair) in insn.chunks_exact(2).enumerate() {
                b[k] = digit(pair[0])? << 4 | digit(pair[1])?;
            }
            Ok(decode(&b))
        })
        .collect()
}
