//! `kubectl vm-drain-safe`: parse, run, exit with the documented status.

use std::process::ExitCode;

fn main() -> ExitCode {
    vm_drain_safe::main().into()
}
