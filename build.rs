//! Links the hotpass binary as a position-dependent executable on Linux,
//! and, in release builds linked by lld, with its hot functions side by side.
//!
//! A position-independent executable is relocated at every start: hotpass
//! carries about 46,000 relocations (its trait objects' tables, its
//! strings), and applying them reads 1.1 MB and dirties 0.75 MB before
//! `main`. A no-op run is a few milliseconds, so that is a tenth of it, and
//! about 2 MB of its peak memory (docs/performance.md). The libraries, the
//! heap and the stack are still placed at random; only the executable's
//! own image is not.
//!
//! A run executes about 1,400 functions, scattered through 17 MB of code;
//! the kernel maps 64 KiB around each page touched, so scattered code is
//! resident memory. `src/hot-functions.txt` (written by
//! `scripts/hot_functions.py`) lists them, and lld places them first. A
//! name the build no longer has is skipped: an old list costs memory,
//! never correctness. Only lld reads such a list, and it is what rustc links
//! x86_64 Linux with unless told otherwise; any other setup links as before.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/hot-functions.txt");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    // rustc's own lld, as it links this target by default, and no flags
    // that choose another linker.
    let default_lld = var("TARGET") == "x86_64-unknown-linux-gnu"
        && !var("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && std::env::var_os("RUSTC_LINKER").is_none()
        && std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none();
    if var("PROFILE") == "release" && default_lld {
        let list = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("src/hot-functions.txt");
        if list.exists() {
            println!(
                "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
                list.display()
            );
            println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        }
    }
}
