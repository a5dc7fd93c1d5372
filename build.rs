//! Links the hotpass binary as a position-dependent executable on Linux.
//!
//! A position-independent executable is relocated at every start: hotpass
//! carries about 46,000 relocations (its trait objects' tables, its
//! strings), and applying them reads 1.1 MB and dirties 0.75 MB before
//! `main`. A no-op run is a few milliseconds, so that is a tenth of it, and
//! about 2 MB of its peak memory (docs/performance.md). The libraries, the
//! heap and the stack are still placed at random; only the executable's
//! own image is not.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
