//! The `hotpass` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    hotpass::run(std::env::args_os())
}
