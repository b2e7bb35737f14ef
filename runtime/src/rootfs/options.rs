//! Mount option parsing: fstab-style options from the OCI spec become mount(2) flags,
//! propagation changes, recursive mount attributes (mount_setattr(2), the `r`-prefixed
//! `rro`, `rnosuid`, ... options) and, for everything else, the data string handed to the
//! filesystem. Pure functions, no system calls.

use nix::mount::MsFlags;

/// `MOUNT_ATTR_*` values from `<linux/mount.h>` (not in the libc crate yet).
pub(crate) mod attr {
    /// Read-only.
    pub const RDONLY: u64 = 0x0000_0001;
    /// Ignore suid and sgid bits.
    pub const NOSUID: u64 = 0x0000_0002;
    /// Disallow access to device special files.
    pub const NODEV: u64 = 0x0000_0004;
    /// Disallow program execution.
    pub const NOEXEC: u64 = 0x0000_0008;
    /// Mask of the access-time settings.
    pub const ATIME_MASK: u64 = 0x0000_0070;
    /// Update atime relative to mtime/ctime (the zero value inside [`ATIME_MASK`]).
    pub const RELATIME: u64 = 0x0000_0000;
    /// Do not update access times.
    pub const NOATIME: u64 = 0x0000_0010;
    /// Always update atime.
    pub const STRICTATIME: u64 = 0x0000_0020;
    /// Do not update directory access times.
    pub const NODIRATIME: u64 = 0x0000_0080;
    /// Do not follow symlinks.
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// `MS_NOSYMFOLLOW` (Linux 5.10), missing from nix's `MsFlags`.
pub(crate) const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// The parsed options of one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for mount(2) (includes `MS_BIND`/`MS_REC` for `bind`/`rbind`).
    pub flags: MsFlags,
    /// Propagation changes (`MS_PRIVATE`, `MS_SLAVE|MS_REC`, ...), applied in order after the
    /// mount, one mount(2) call each.
    pub propagation: Vec<MsFlags>,
    /// `MOUNT_ATTR_*` bits to set recursively with mount_setattr(2).
    pub attr_set: u64,
    /// `MOUNT_ATTR_*` bits to clear recursively with mount_setattr(2).
    pub attr_clr: u64,
    /// Every option that is none of the above, joined with commas: the filesystem's data.
    pub data: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            attr_set: 0,
            attr_clr: 0,
            data: String::new(),
        }
    }
}

impl MountOptions {
    /// A bind mount (`bind` or `rbind`).
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// The data string, or `None` when empty.
    pub fn data(&self) -> Option<&str> {
        (!self.data.is_empty()).then_some(self.data.as_str())
    }

    /// Whether mount_setattr(2) has anything to do.
    pub fn has_attrs(&self) -> bool {
        self.attr_set != 0 || self.attr_clr != 0
    }
}

/// What one option means.
enum Opt {
    /// Set mount(2) flags.
    Set(MsFlags),
    /// Clear mount(2) flags.
    Clear(MsFlags),
    /// A propagation change.
    Propagation(MsFlags),
    /// Set a recursive mount attribute.
    AttrSet(u64),
    /// Clear a recursive mount attribute.
    AttrClr(u64),
}

fn lookup(opt: &str) -> Option<Opt> {
    use MsFlags as F;
    use Opt::{AttrClr, AttrSet, Clear, Set};
    if let Some(p) = parse_propagation(opt) {
        return Some(Opt::Propagation(p));
    }
    Some(match opt {
        "defaults" => Set(F::empty()),
        "ro" => Set(F::MS_RDONLY),
        "rw" => Clear(F::MS_RDONLY),
        "nosuid" => Set(F::MS_NOSUID),
        "suid" => Clear(F::MS_NOSUID),
        "nodev" => Set(F::MS_NODEV),
        "dev" => Clear(F::MS_NODEV),
        "noexec" => Set(F::MS_NOEXEC),
        "exec" => Clear(F::MS_NOEXEC),
        "sync" => Set(F::MS_SYNCHRONOUS),
        "async" => Clear(F::MS_SYNCHRONOUS),
        "dirsync" => Set(F::MS_DIRSYNC),
        "remount" => Set(F::MS_REMOUNT),
        "mand" => Set(F::MS_MANDLOCK),
        "nomand" => Clear(F::MS_MANDLOCK),
        "atime" => Clear(F::MS_NOATIME),
        "noatime" => Set(F::MS_NOATIME),
        "diratime" => Clear(F::MS_NODIRATIME),
        "nodiratime" => Set(F::MS_NODIRATIME),
        "relatime" => Set(F::MS_RELATIME),
        "norelatime" => Clear(F::MS_RELATIME),
        "strictatime" => Set(F::MS_STRICTATIME),
        "nostrictatime" => Clear(F::MS_STRICTATIME),
        "lazytime" => Set(F::MS_LAZYTIME),
        "nolazytime" => Clear(F::MS_LAZYTIME),
        "iversion" => Set(F::MS_I_VERSION),
        "noiversion" => Clear(F::MS_I_VERSION),
        "acl" => Set(F::MS_POSIXACL),
        "noacl" => Clear(F::MS_POSIXACL),
        "silent" => Set(F::MS_SILENT),
        "loud" => Clear(F::MS_SILENT),
        "nosymfollow" => Set(MS_NOSYMFOLLOW),
        "symfollow" => Clear(MS_NOSYMFOLLOW),
        "bind" => Set(F::MS_BIND),
        "rbind" => Set(F::MS_BIND | F::MS_REC),
        "rro" => AttrSet(attr::RDONLY),
        "rrw" => AttrClr(attr::RDONLY),
        "rnosuid" => AttrSet(attr::NOSUID),
        "rsuid" => AttrClr(attr::NOSUID),
        "rnodev" => AttrSet(attr::NODEV),
        "rdev" => AttrClr(attr::NODEV),
        "rnoexec" => AttrSet(attr::NOEXEC),
        "rexec" => AttrClr(attr::NOEXEC),
        "rnodiratime" => AttrSet(attr::NODIRATIME),
        "rdiratime" => AttrClr(attr::NODIRATIME),
        "rrelatime" => AttrSet(attr::RELATIME),
        "rnorelatime" => AttrClr(attr::RELATIME),
        "rnoatime" => AttrSet(attr::NOATIME),
        "ratime" => AttrClr(attr::NOATIME),
        "rstrictatime" => AttrSet(attr::STRICTATIME),
        "rnostrictatime" => AttrClr(attr::STRICTATIME),
        "rnosymfollow" => AttrSet(attr::NOSYMFOLLOW),
        "rsymfollow" => AttrClr(attr::NOSYMFOLLOW),
        _ => return None,
    })
}

/// Every option name this module recognises (flags, recursive attributes, propagation), for
/// the runtime's features document.
pub const KNOWN_OPTIONS: &[&str] = &[
    "defaults",
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "sync",
    "async",
    "dirsync",
    "remount",
    "mand",
    "nomand",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "iversion",
    "noiversion",
    "acl",
    "noacl",
    "silent",
    "loud",
    "nosymfollow",
    "symfollow",
    "bind",
    "rbind",
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnodiratime",
    "rdiratime",
    "rrelatime",
    "rnorelatime",
    "rnoatime",
    "ratime",
    "rstrictatime",
    "rnostrictatime",
    "rnosymfollow",
    "rsymfollow",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
];

/// A propagation option (`private`, `rprivate`, `shared`, `rshared`, `slave`, `rslave`,
/// `unbindable`, `runbindable`) as mount(2) flags; `None` for anything else.
pub fn parse_propagation(opt: &str) -> Option<MsFlags> {
    use MsFlags as F;
    Some(match opt {
        "private" => F::MS_PRIVATE,
        "rprivate" => F::MS_PRIVATE | F::MS_REC,
        "shared" => F::MS_SHARED,
        "rshared" => F::MS_SHARED | F::MS_REC,
        "slave" => F::MS_SLAVE,
        "rslave" => F::MS_SLAVE | F::MS_REC,
        "unbindable" => F::MS_UNBINDABLE,
        "runbindable" => F::MS_UNBINDABLE | F::MS_REC,
        _ => return None,
    })
}

/// Parse a spec mount's options. Later options win over earlier ones (`ro,rw` is rw).
/// Unknown options are not an error: they go, in order, into [`MountOptions::data`].
pub fn parse_mount_options<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut out = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let opt = opt.as_ref();
        match lookup(opt) {
            Some(Opt::Set(f)) => out.flags.insert(f),
            Some(Opt::Clear(f)) => out.flags.remove(f),
            Some(Opt::Propagation(f)) => out.propagation.push(f),
            Some(Opt::AttrSet(a)) => {
                out.attr_set |= a;
                out.attr_clr &= !a;
                // mount_setattr(2): an access-time setting must also clear the whole atime mask.
                if a & attr::ATIME_MASK == a {
                    out.attr_clr |= attr::ATIME_MASK;
                }
            }
            Some(Opt::AttrClr(a)) => {
                out.attr_clr |= a;
                out.attr_set &= !a;
            }
            None if opt.is_empty() => {}
            None => data.push(opt),
        }
    }
    out.data = data.join(",");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use MsFlags as F;

    #[test]
    fn known_options_are_all_recognised() {
        for opt in KNOWN_OPTIONS {
            assert!(
                lookup(opt).is_some() || parse_propagation(opt).is_some(),
                "{opt} is listed but not recognised"
            );
        }
    }

    #[test]
    fn devpts_defaults() {
        let o = parse_mount_options(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(o.flags, F::MS_NOSUID | F::MS_NOEXEC);
        assert_eq!(o.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
        assert!(o.propagation.is_empty());
        assert!(!o.is_bind());
        assert!(!o.has_attrs());
    }

    #[test]
    fn bind_with_flags_and_propagation() {
        let o = parse_mount_options(&["rbind", "ro", "nodev", "rprivate", "slave"]);
        assert_eq!(o.flags, F::MS_BIND | F::MS_REC | F::MS_RDONLY | F::MS_NODEV);
        assert_eq!(o.propagation, vec![F::MS_PRIVATE | F::MS_REC, F::MS_SLAVE]);
        assert!(o.is_bind());
        assert_eq!(o.data(), None);
    }

    #[test]
    fn later_options_win() {
        let o = parse_mount_options(&["ro", "nosuid", "rw", "suid", "noexec", "exec", "dev"]);
        assert_eq!(o.flags, F::empty());
        let o = parse_mount_options(&["rw", "ro"]);
        assert_eq!(o.flags, F::MS_RDONLY);
    }

    #[test]
    fn atime_and_misc_flags() {
        let o = parse_mount_options(&[
            "noatime",
            "nodiratime",
            "relatime",
            "strictatime",
            "sync",
            "dirsync",
            "mand",
            "remount",
            "nosymfollow",
            "defaults",
        ]);
        assert_eq!(
            o.flags,
            F::MS_NOATIME
                | F::MS_NODIRATIME
                | F::MS_RELATIME
                | F::MS_STRICTATIME
                | F::MS_SYNCHRONOUS
                | F::MS_DIRSYNC
                | F::MS_MANDLOCK
                | F::MS_REMOUNT
                | MS_NOSYMFOLLOW
        );
        let o = parse_mount_options(&["noatime", "atime", "relatime", "norelatime", "async"]);
        assert_eq!(o.flags, F::empty());
        assert_eq!(o.data, "");
    }

    #[test]
    fn unknown_options_are_data_in_order() {
        let o = parse_mount_options(&["size=65536k", "ro", "mode=1777", "", "uid=0"]);
        assert_eq!(o.flags, F::MS_RDONLY);
        assert_eq!(o.data(), Some("size=65536k,mode=1777,uid=0"));
    }

    #[test]
    fn recursive_attrs() {
        let o = parse_mount_options(&["rbind", "rro", "rnosuid", "rnoatime"]);
        assert_eq!(o.attr_set, attr::RDONLY | attr::NOSUID | attr::NOATIME);
        assert_eq!(o.attr_clr, attr::ATIME_MASK);
        assert!(o.has_attrs());
        assert_eq!(o.flags, F::MS_BIND | F::MS_REC);
        assert_eq!(o.data, "");

        let o = parse_mount_options(&["rro", "rrw", "rexec"]);
        assert_eq!(o.attr_set, 0);
        assert_eq!(o.attr_clr, attr::RDONLY | attr::NOEXEC);
    }

    #[test]
    fn propagation_names() {
        assert_eq!(parse_propagation("rslave"), Some(F::MS_SLAVE | F::MS_REC));
        assert_eq!(parse_propagation("shared"), Some(F::MS_SHARED));
        assert_eq!(
            parse_propagation("runbindable"),
            Some(F::MS_UNBINDABLE | F::MS_REC)
        );
        assert_eq!(parse_propagation("private"), Some(F::MS_PRIVATE));
        assert_eq!(parse_propagation("bogus"), None);
        assert_eq!(parse_propagation(""), None);
    }

    #[test]
    fn empty() {
        let none: [&str; 0] = [];
        assert_eq!(parse_mount_options(&none), MountOptions::default());
    }
}
