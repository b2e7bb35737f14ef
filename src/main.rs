//! One binary, three roles chosen before anything else runs: `<exe> init` is the container init
//! the runtime re-executes (first and fastest); invoked as `containerd-shim-*` (the name
//! containerd derives from the runtime name) it is the containerd shim; under any other name
//! (`myshim`, the link `make install` creates) it is the runc-compatible command line.

mod cli;

fn main() {
    // The init must take over before anything else runs (no threads yet).
    let first = std::env::args_os().nth(1);
    if first.as_ref().is_some_and(|a| a == "init") {
        myshim_runtime::init::main();
    }
    if !invoked_as_shim() {
        std::process::exit(cli::main());
    }
    // containerd passes flags first (`-namespace ... start`). Anything else is not containerd:
    // e.g. a container script whose interpreter is `/proc/self/exe` of a runtime helper.
    if first.is_some_and(|a| !a.as_encoded_bytes().starts_with(b"-")) {
        eprintln!("containerd-shim-myshim-v2: run by containerd only (flags first)");
        std::process::exit(2);
    }
    // One malloc arena for all of the shim's threads: they allocate little, and every extra
    // arena is private memory paid by each of the host's shims.
    // SAFETY: mallopt only sets an allocator tunable; no thread exists yet.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    std::process::exit(myshim_shim::run());
}

/// Whether argv[0]'s file name starts with `containerd-shim` (no argv[0]: the shim, as before).
fn invoked_as_shim() -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Some(arg0) = std::env::args_os().next() else {
        return true;
    };
    let name = std::path::Path::new(&arg0)
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    name.starts_with(b"containerd-shim")
}
