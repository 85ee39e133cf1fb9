//! `sluice ctl`: ipvsadm's verbs and flags, spoken to a running sluice
//! over its control socket. (Skeleton: filled in by the ctl work.)

use std::path::Path;
use std::process::ExitCode;

pub fn run(socket: &Path, args: &[String]) -> ExitCode {
    let _ = (socket, args);
    eprintln!("sluice ctl: not built yet");
    ExitCode::from(2)
}
