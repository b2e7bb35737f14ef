//! Tests of the public rootfs API. The end-to-end test needs root: it builds a busybox rootfs
//! in a temporary bundle and re-runs this test binary under `unshare(1)` (new mount, pid, uts,
//! ipc and net namespaces) to prepare, pivot into and finalize it, then checks the result from
//! inside. Run it with
//! `cargo test -p myshim-runtime --lib rootfs::tests::end_to_end -- --ignored --nocapture`.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::stat::{major, minor};
use nix::sys::statfs::{
    statfs, CGROUP_SUPER_MAGIC, DEVPTS_SUPER_MAGIC, PROC_SUPER_MAGIC, TMPFS_MAGIC,
};
use nix::sys::statvfs::{statvfs, FsFlags};
use oci_spec::runtime::{
    get_default_mounts, LinuxBuilder, LinuxDeviceBuilder, LinuxDeviceType, Mount, Spec,
};

use super::*;

fn spec_with_propagation(p: &str) -> Spec {
    let mut spec = Spec::default();
    let linux = LinuxBuilder::default()
        .rootfs_propagation(p)
        .build()
        .expect("linux");
    spec.set_linux(Some(linux));
    spec
}

#[test]
fn rootfs_propagation_values() {
    assert_eq!(rootfs_propagation(&Spec::default()).expect("default"), None);
    assert_eq!(
        rootfs_propagation(&spec_with_propagation("")).expect("empty"),
        None
    );
    assert_eq!(
        rootfs_propagation(&spec_with_propagation("rprivate")).expect("rprivate"),
        Some(MsFlags::MS_PRIVATE | MsFlags::MS_REC)
    );
    assert_eq!(
        rootfs_propagation(&spec_with_propagation("shared")).expect("shared"),
        Some(MsFlags::MS_SHARED)
    );
    assert!(matches!(
        rootfs_propagation(&spec_with_propagation("rsomething")),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn prepare_refuses_bad_config_before_mounting() {
    // Relative rootfs and unknown propagation are refused without touching anything.
    assert!(matches!(
        prepare(&Spec::default(), Path::new("rootfs")),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        prepare(&spec_with_propagation("bogus"), Path::new("/nonexistent")),
        Err(Error::InvalidConfig(_))
    ));
}

/// Environment variable that tells [`in_container`] where the bundle is.
const BUNDLE_ENV: &str = "MYSHIM_ROOTFS_TEST_BUNDLE";
/// Set (to anything) when [`in_container`] runs in its own cgroup namespace.
const CGROUPNS_ENV: &str = "MYSHIM_ROOTFS_TEST_CGROUPNS";
/// Set (to anything) when [`in_container`] uses `rootfsPropagation: rshared`.
const RSHARED_ENV: &str = "MYSHIM_ROOTFS_TEST_RSHARED";

fn mount(typ: &str, src: &str, dest: &str, opts: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(src)));
    m.set_destination(PathBuf::from(dest));
    m.set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
    m
}

/// The spec used by the end-to-end test: runc's defaults (with or without a cgroup namespace,
/// with the default or `rshared` rootfs propagation) plus a few extra mounts and a device.
fn test_spec(cgroupns: bool, rshared: bool) -> Spec {
    let mut spec = Spec::default();
    let mut mounts = get_default_mounts();
    mounts.push(mount("tmpfs", "tmpfs", "/escape/t", &["size=1m"]));
    mounts.push(mount(
        "bind",
        "data",
        "/mnt/data",
        &["rbind", "ro", "nosuid", "rnodev", "rprivate"],
    ));
    mounts.push(mount("none", "hostname", "/etc/hostname", &["bind", "ro"]));
    mounts.push(mount(
        "tmpfs",
        "tmpfs",
        "/run",
        &["ro", "nosuid", "size=1m", "mode=700"],
    ));
    spec.set_mounts(Some(mounts));
    let fuse = LinuxDeviceBuilder::default()
        .path("/dev/fuse")
        .typ(LinuxDeviceType::C)
        .major(10)
        .minor(229)
        .file_mode(0o600u32)
        .uid(1000u32)
        .gid(1000u32)
        .build()
        .expect("device");
    if let Some(linux) = spec.linux_mut() {
        linux.set_devices(Some(vec![fuse]));
        if !cgroupns {
            if let Some(ns) = linux.namespaces_mut() {
                ns.retain(|n| n.typ() != LinuxNamespaceType::Cgroup);
            }
        }
        if rshared {
            linux.set_rootfs_propagation(Some("rshared".to_string()));
        }
    }
    spec
}

fn build_bundle(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).expect("mkdir bin");
    fs::create_dir_all(rootfs.join("etc")).expect("mkdir etc");
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    symlink("busybox", rootfs.join("bin/sh")).expect("symlink sh");
    // Tries to lead the /escape/t mount out of the rootfs.
    symlink("/../../../etc", rootfs.join("escape")).expect("symlink escape");
    fs::create_dir_all(bundle.join("data")).expect("mkdir data");
    fs::write(bundle.join("data/hello.txt"), "hi").expect("write data");
    fs::write(bundle.join("hostname"), "testhost\n").expect("write hostname");
}

/// Root only: the whole of prepare/pivot/finalize in throwaway namespaces: with a cgroup
/// namespace and the default propagation, then without a cgroup namespace and with `rshared`
/// (in a namespace whose mounts were first made private, so that nothing can reach the host).
#[test]
#[ignore = "needs root, unshare(1) and /bin/busybox"]
fn end_to_end() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: not root");
        return;
    }
    run_in_namespaces(true, false);
    run_in_namespaces(false, true);
}

fn run_in_namespaces(cgroupns: bool, rshared: bool) {
    let bundle = std::env::temp_dir().join(format!("myshim-rootfs-e2e-{}", std::process::id()));
    let _ = fs::remove_dir_all(&bundle);
    build_bundle(&bundle);
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--pid", "--fork", "--uts", "--ipc", "--net"]);
    if cgroupns {
        cmd.arg("--cgroup").env(CGROUPNS_ENV, "1");
    } else {
        cmd.env_remove(CGROUPNS_ENV);
    }
    if rshared {
        cmd.args(["--propagation", "private"]).env(RSHARED_ENV, "1");
    } else {
        cmd.args(["--propagation", "unchanged"])
            .env_remove(RSHARED_ENV);
    }
    let status = cmd
        .arg(exe)
        .args([
            "--exact",
            "rootfs::tests::in_container",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(BUNDLE_ENV, &bundle)
        .status()
        .expect("run unshare");
    let host_mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let leaked: Vec<&str> = host_mounts
        .lines()
        .filter(|l| l.contains(bundle.to_str().unwrap_or("?")))
        .collect();
    fs::remove_dir_all(&bundle).expect("remove bundle");
    assert!(
        status.success(),
        "in-container checks failed (cgroupns {cgroupns}): {status}"
    );
    assert!(leaked.is_empty(), "mounts leaked to the host: {leaked:#?}");
}

fn is_rdonly(path: &str) -> bool {
    statvfs(path)
        .unwrap_or_else(|e| panic!("statvfs {path}: {e}"))
        .flags()
        .contains(FsFlags::ST_RDONLY)
}

fn fs_type(path: &str) -> nix::sys::statfs::FsType {
    statfs(path)
        .unwrap_or_else(|e| panic!("statfs {path}: {e}"))
        .filesystem_type()
}

/// Runs in the namespaces made by [`end_to_end`]; does nothing otherwise.
#[test]
#[ignore = "run by end_to_end"]
fn in_container() {
    let Some(bundle) = std::env::var_os(BUNDLE_ENV) else {
        return;
    };
    let rootfs = Path::new(&bundle).join("rootfs");
    let cgroupns = std::env::var_os(CGROUPNS_ENV).is_some();
    let rshared = std::env::var_os(RSHARED_ENV).is_some();
    println!("in_container: cgroup namespace {cgroupns}, rshared {rshared}");
    let spec = test_spec(cgroupns, rshared);
    let cgroup_v1 = fs_type("/sys/fs/cgroup") == TMPFS_MAGIC;

    prepare(&spec, &rootfs).unwrap_or_else(|e| panic!("prepare: {e:#}"));
    // The escaping symlink was followed inside the rootfs.
    assert_eq!(
        fs_type(rootfs.join("etc/t").to_str().expect("utf-8")),
        TMPFS_MAGIC
    );
    pivot(&rootfs).unwrap_or_else(|e| panic!("pivot: {e:#}"));
    mount_console(Path::new("/dev/null")).unwrap_or_else(|e| panic!("console: {e:#}"));
    finalize(&spec).unwrap_or_else(|e| panic!("finalize: {e:#}"));

    // The host is gone.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mountinfo.contains(" /work"), "{mountinfo}");
    assert_eq!(std::env::current_dir().expect("cwd"), Path::new("/"));
    let root_line = mountinfo::parse_mountinfo(&mountinfo)
        .into_iter()
        .find(|m| m.mount_point == Path::new("/"))
        .expect("a / mount");
    assert_eq!(root_line.is_shared(), rshared, "{root_line:?}");

    // proc of the new pid namespace.
    assert_eq!(fs_type("/proc"), PROC_SUPER_MAGIC);
    assert_eq!(
        fs::read_link("/proc/self").expect("/proc/self"),
        Path::new("1")
    );

    // Devices.
    let null = fs::metadata("/dev/null").expect("/dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!((major(null.rdev()), minor(null.rdev())), (1, 3));
    assert_eq!(null.permissions().mode() & 0o7777, 0o666);
    for name in ["zero", "full", "random", "urandom", "tty"] {
        let m = fs::metadata(format!("/dev/{name}")).expect(name);
        assert!(m.file_type().is_char_device(), "{name}");
    }
    let fuse = fs::metadata("/dev/fuse").expect("/dev/fuse");
    assert_eq!((major(fuse.rdev()), minor(fuse.rdev())), (10, 229));
    assert_eq!(
        (fuse.uid(), fuse.gid(), fuse.permissions().mode() & 0o7777),
        (1000, 1000, 0o600)
    );
    let mut zeros = [1u8; 16];
    std::io::Read::read_exact(&mut fs::File::open("/dev/zero").expect("zero"), &mut zeros)
        .expect("read /dev/zero");
    assert_eq!(zeros, [0u8; 16]);
    assert_eq!(
        fs::read_link("/dev/ptmx").expect("ptmx"),
        Path::new("pts/ptmx")
    );
    assert_eq!(
        fs::read_link("/dev/fd").expect("fd"),
        Path::new("/proc/self/fd")
    );
    assert_eq!(
        fs::read_link("/dev/stderr").expect("stderr"),
        Path::new("/proc/self/fd/2")
    );
    assert_eq!(fs_type("/dev/pts"), DEVPTS_SUPER_MAGIC);
    assert!(fs::metadata("/dev/console")
        .expect("console")
        .file_type()
        .is_char_device());
    assert!(Path::new("/dev/shm").is_dir() && Path::new("/dev/mqueue").is_dir());

    // Read-only things.
    assert!(is_rdonly("/"));
    let err = fs::write("/newfile", "x").expect_err("/ is read-only");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert!(is_rdonly("/proc/sys"));
    assert!(is_rdonly("/sys"));
    assert!(is_rdonly("/sys/fs/cgroup"));
    assert!(is_rdonly("/run") && fs_type("/run") == TMPFS_MAGIC);
    assert_eq!(
        fs::metadata("/run").expect("/run").permissions().mode() & 0o7777,
        0o700
    );
    assert!(!is_rdonly("/dev") && !is_rdonly("/escape/t") && !is_rdonly("/dev/shm"));

    // Masked paths.
    if let Ok(kcore) = fs::metadata("/proc/kcore") {
        assert_eq!((major(kcore.rdev()), minor(kcore.rdev())), (1, 3));
        assert_eq!(kcore.len(), 0);
    }
    if Path::new("/sys/firmware").exists() {
        assert_eq!(fs_type("/sys/firmware"), TMPFS_MAGIC);
        assert!(is_rdonly("/sys/firmware"));
    }

    // Binds, relative to the bundle.
    assert_eq!(
        fs::read_to_string("/mnt/data/hello.txt").expect("data"),
        "hi"
    );
    let data = statvfs("/mnt/data").expect("statvfs data").flags();
    assert!(data.contains(FsFlags::ST_RDONLY | FsFlags::ST_NOSUID | FsFlags::ST_NODEV));
    assert_eq!(
        fs::read_to_string("/etc/hostname").expect("hostname"),
        "testhost\n"
    );
    assert!(is_rdonly("/etc/hostname"));

    // cgroups.
    if cgroup_v1 {
        assert_eq!(fs_type("/sys/fs/cgroup"), TMPFS_MAGIC);
        assert_eq!(fs_type("/sys/fs/cgroup/memory"), CGROUP_SUPER_MAGIC);
        assert!(Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists());
        assert!(is_rdonly("/sys/fs/cgroup/memory"));
        // The container's own cgroup, whose only processes are ours.
        let procs = fs::read_to_string("/sys/fs/cgroup/memory/cgroup.procs").expect("procs");
        assert!(procs.lines().any(|p| p == "1"), "cgroup.procs: {procs:?}");
    } else {
        assert!(Path::new("/sys/fs/cgroup/cgroup.controllers").exists());
    }

    let out = Command::new("/bin/busybox")
        .args([
            "sh",
            "-c",
            "ls -l /dev /sys/fs/cgroup && cat /proc/self/mountinfo",
        ])
        .output()
        .expect("run busybox");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
