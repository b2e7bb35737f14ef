//! `containerd-shim-myshim-v2`: the containerd shim, and (as `<exe> init`) the container init
//! that the runtime re-executes.

fn main() {
    // The init must take over before anything else runs (no threads yet).
    let first = std::env::args_os().nth(1);
    if first.as_ref().is_some_and(|a| a == "init") {
        myshim_runtime::init::main();
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
