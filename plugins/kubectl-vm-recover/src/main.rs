//! `kubectl vm-recover`: parse, run, exit with the documented status.

use std::process::ExitCode;

fn main() -> ExitCode {
    vm_recover::main().into()
}
