//! Paths inside the container's rootfs, used on the host before pivot_root.
//!
//! The rootfs is untrusted: a destination like `/etc/foo` may go through symlinks that point
//! anywhere. [`resolve_in_root`] walks the path component by component as the kernel would if
//! `root` were `/` (absolute symlink targets restart at `root`, `..` never climbs above it), so
//! the result always names something inside `root`. The creation helpers refuse to go through a
//! symlink that appeared after resolution, and [`Target`] opens the final path `O_PATH` and checks
//! through `/proc/self/fd` where it really is before anything is mounted there.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};

/// Symlinks followed in one resolution before giving up (the kernel's limit is 40, Go's
/// securejoin uses 255).
const MAX_SYMLINKS: usize = 255;

/// Resolve `path` (absolute or not, both taken from `root`) inside `root`, following symlinks as
/// if `root` were the root directory. Components that do not exist are taken literally (and the
/// rest of the path with them). The result is `root` joined with a path free of `.`, `..` and
/// (at the time of the call) symlinks. `root` should be canonical.
pub fn resolve_in_root(root: &Path, path: &Path) -> anyhow::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front_components(&mut pending, path);
    let mut resolved = PathBuf::new();
    let mut links = 0usize;
    while let Some(comp) = pending.pop_front() {
        if comp == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&comp);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    bail!(
                        "resolve {} in {}: too many levels of symbolic links",
                        path.display(),
                        root.display()
                    );
                }
                let target =
                    fs::read_link(&full).with_context(|| format!("readlink {}", full.display()))?;
                if target.has_root() {
                    resolved = PathBuf::new();
                }
                push_front_components(&mut pending, &target);
            }
            Ok(_) => resolved = candidate,
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved = candidate,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "resolve {} in {}: lstat {}",
                        path.display(),
                        root.display(),
                        full.display()
                    )
                })
            }
        }
    }
    Ok(root.join(resolved))
}

/// Put `path`'s components (without `/` and `.`) in front of `queue`, in order.
fn push_front_components(queue: &mut VecDeque<OsString>, path: &Path) {
    let comps: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    for c in comps.into_iter().rev() {
        queue.push_front(c);
    }
}

/// The part of `full` below `root`, or an error when it is not below it.
fn relative<'a>(root: &Path, full: &'a Path) -> anyhow::Result<&'a Path> {
    full.strip_prefix(root)
        .with_context(|| format!("{} is not inside {}", full.display(), root.display()))
}

/// `mkdir -p` for a path returned by [`resolve_in_root`]: creates each missing directory (mode
/// 0755) and refuses to continue through anything that is not a real directory.
pub fn mkdir_all_in_root(root: &Path, full: &Path) -> anyhow::Result<()> {
    let rel = relative(root, full)?;
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        let Component::Normal(name) = comp else {
            bail!("mkdir {}: unexpected component {:?}", full.display(), comp);
        };
        cur.push(name);
        match fs::DirBuilder::new().mode(0o755).create(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("mkdir {}", cur.display())),
        }
        let meta =
            fs::symlink_metadata(&cur).with_context(|| format!("lstat {}", cur.display()))?;
        if meta.file_type().is_symlink() {
            bail!("mkdir {}: {} is a symlink", full.display(), cur.display());
        }
        if !meta.is_dir() {
            bail!(
                "mkdir {}: {} is not a directory",
                full.display(),
                cur.display()
            );
        }
    }
    Ok(())
}

/// Make sure the path returned by [`resolve_in_root`] exists, creating an empty file (mode
/// 0644, and its parent directories) when it does not. Anything already there is kept unless it
/// is a symlink.
pub fn create_file_in_root(root: &Path, full: &Path) -> anyhow::Result<()> {
    if let Some(parent) = full.parent() {
        if parent.starts_with(root) {
            mkdir_all_in_root(root, parent)?;
        }
    }
    match fs::symlink_metadata(full) {
        Ok(meta) if meta.file_type().is_symlink() => {
            bail!("create {}: is a symlink", full.display())
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            OpenOptions::new()
                .write(true)
                .create(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(full)
                .with_context(|| format!("create {}", full.display()))?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("lstat {}", full.display())),
    }
}

/// An `O_PATH` handle on a path inside the rootfs, checked to really be inside it. Mount onto
/// [`Target::proc_path`] so that the kernel uses exactly the checked inode even if the path is
/// changed meanwhile. Open a new one after each mount: the handle keeps naming what was there
/// before (the covered directory), not the new mount on top.
pub struct Target {
    file: File,
    proc_path: PathBuf,
}

impl Target {
    /// Open `full` (from [`resolve_in_root`]) without following a final symlink and check that
    /// `/proc/self/fd/N` leads back inside `root`. Without a usable `/proc` the plain path is
    /// used.
    pub fn open(root: &Path, full: &Path) -> anyhow::Result<Target> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
            .open(full)
            .with_context(|| format!("open {}", full.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("fstat {}", full.display()))?;
        if meta.file_type().is_symlink() {
            bail!("{} is a symlink", full.display());
        }
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        match fs::read_link(&proc_path) {
            Ok(real) => {
                if !real.starts_with(root) {
                    bail!(
                        "{} resolves to {}, outside of the rootfs {}",
                        full.display(),
                        real.display(),
                        root.display()
                    );
                }
                Ok(Target { file, proc_path })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Target {
                file,
                proc_path: full.to_path_buf(),
            }),
            Err(e) => Err(e).with_context(|| format!("readlink {}", proc_path.display())),
        }
    }

    /// The path to hand to mount(2) and friends.
    pub fn path(&self) -> &Path {
        &self.proc_path
    }

    /// The open `O_PATH` file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A temporary directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let base = std::env::temp_dir().join(format!(
                "myshim-resolve-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&base).expect("create temp dir");
            TempDir(fs::canonicalize(&base).expect("canonicalize temp dir"))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// root/{etc/passwd, usr/lib, lib -> usr/lib, abs -> /etc, up -> ../../../.., loop1 <-> loop2,
    /// rel -> ./etc/../usr, deep -> abs/../usr/lib/../../etc}
    fn tree() -> TempDir {
        let t = TempDir::new("tree");
        let r = &t.0;
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/passwd"), "root").unwrap();
        fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../../..", r.join("up")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("/loop1", r.join("loop2")).unwrap();
        symlink("./etc/../usr", r.join("rel")).unwrap();
        symlink("abs/../usr/lib/../../etc", r.join("deep")).unwrap();
        symlink("/etc/passwd", r.join("etc/pw")).unwrap();
        t
    }

    #[test]
    fn plain_paths() {
        let t = tree();
        let r = &t.0;
        assert_eq!(
            resolve_in_root(r, Path::new("/etc/passwd")).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("etc/./passwd")).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(resolve_in_root(r, Path::new("/")).unwrap(), r.clone());
        assert_eq!(resolve_in_root(r, Path::new("")).unwrap(), r.clone());
    }

    #[test]
    fn dotdot_stays_inside() {
        let t = tree();
        let r = &t.0;
        assert_eq!(
            resolve_in_root(r, Path::new("/../../etc")).unwrap(),
            r.join("etc")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/usr/../../..")).unwrap(),
            r.clone()
        );
    }

    #[test]
    fn relative_symlinks() {
        let t = tree();
        let r = &t.0;
        assert_eq!(
            resolve_in_root(r, Path::new("/lib/x")).unwrap(),
            r.join("usr/lib/x")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/rel/lib")).unwrap(),
            r.join("usr/lib")
        );
        // `..` after a symlink applies to where the symlink led, like the kernel does.
        assert_eq!(
            resolve_in_root(r, Path::new("/lib/..")).unwrap(),
            r.join("usr")
        );
    }

    #[test]
    fn absolute_symlinks_are_relative_to_root() {
        let t = tree();
        let r = &t.0;
        assert_eq!(
            resolve_in_root(r, Path::new("/abs/passwd")).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/deep")).unwrap(),
            r.join("etc")
        );
        // The final component is resolved too.
        assert_eq!(
            resolve_in_root(r, Path::new("/etc/pw")).unwrap(),
            r.join("etc/passwd")
        );
    }

    #[test]
    fn escaping_symlinks_are_clamped() {
        let t = tree();
        let r = &t.0;
        assert_eq!(resolve_in_root(r, Path::new("/up")).unwrap(), r.clone());
        assert_eq!(
            resolve_in_root(r, Path::new("/up/etc/shadow")).unwrap(),
            r.join("etc/shadow")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/up/up/abs/../up/tmp")).unwrap(),
            r.join("tmp")
        );
    }

    #[test]
    fn missing_components_are_literal() {
        let t = tree();
        let r = &t.0;
        assert_eq!(
            resolve_in_root(r, Path::new("/new/dir/../file")).unwrap(),
            r.join("new/file")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/abs/new")).unwrap(),
            r.join("etc/new")
        );
    }

    #[test]
    fn symlink_loops_fail() {
        let t = tree();
        let r = &t.0;
        let err = resolve_in_root(r, Path::new("/loop1/x")).unwrap_err();
        assert!(err.to_string().contains("too many levels"), "{err:#}");
    }

    #[test]
    fn mkdir_and_create_inside_root() {
        let t = tree();
        let r = &t.0;
        let d = resolve_in_root(r, Path::new("/abs/a/b")).unwrap();
        mkdir_all_in_root(r, &d).unwrap();
        assert!(r.join("etc/a/b").is_dir());
        let f = resolve_in_root(r, Path::new("/lib/x/y/file")).unwrap();
        create_file_in_root(r, &f).unwrap();
        assert!(r.join("usr/lib/x/y/file").is_file());
        // Existing file kept.
        create_file_in_root(r, &r.join("etc/passwd")).unwrap();
        assert_eq!(fs::read_to_string(r.join("etc/passwd")).unwrap(), "root");
        // Refuses to go through a symlink or a file.
        assert!(mkdir_all_in_root(r, &r.join("abs/z")).is_err());
        assert!(mkdir_all_in_root(r, &r.join("etc/passwd/z")).is_err());
        assert!(create_file_in_root(r, &r.join("etc/pw")).is_err());
        assert!(mkdir_all_in_root(r, Path::new("/elsewhere")).is_err());
    }

    #[test]
    fn target_checks_location() {
        let t = tree();
        let r = &t.0;
        let target = Target::open(r, &r.join("etc")).unwrap();
        assert!(target.file().metadata().unwrap().is_dir());
        if Path::new("/proc/self/fd").exists() {
            assert!(target.path().starts_with("/proc/self/fd"));
            // `usr` really is outside of `etc`, seen as a root.
            let err = Target::open(&r.join("etc"), &r.join("usr")).err().unwrap();
            assert!(err.to_string().contains("outside of the rootfs"), "{err:#}");
        }
        assert!(Target::open(r, &r.join("abs")).is_err());
    }
}
