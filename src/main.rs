//! The `segkit` command: see `segkit --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    segkit::cli::main()
}
