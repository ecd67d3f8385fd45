//! `kubectl vm-audit`: parse, run, exit with the documented status.

use std::process::ExitCode;

fn main() -> ExitCode {
    vm_audit::main().into()
}
