//! `containerd-shim-myshim-v2`: the containerd shim, and (as `<exe> init`) the container init
//! that the runtime re-executes.

fn main() {
    // The init must take over before anything else runs (no threads yet).
    if std::env::args_os().nth(1).is_some_and(|a| a == "init") {
        myshim_runtime::init::main();
    }
    myshim_shim::run();
}
