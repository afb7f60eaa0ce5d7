//! What every black-box test of the `flick` binary needs: a free port and the binary with a
//! clean environment.

use std::process::Command;

/// A port nothing listens on now (the OS's pick).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The binary with every `FLICK_*` variable of the test environment removed, so it sees only
/// what the test sets.
pub fn flick() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flick"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FLICK_") {
            cmd.env_remove(key);
        }
    }
    cmd
}
