//! `offsnap remote install`: puts this machine's own `offsnap-remote` on an
//! SSH host (in `~/.local/bin`, atomically), when the host runs the same
//! OS and architecture; otherwise says how to build it there.

use std::io::{Read, Write};

use crate::dest::{ConnectOptions, SshDest, start_remote};
use crate::error::{Error, Result};
use crate::remote_cmd::RemoteCommand;

/// Where the helper goes, relative to the login's home.
pub const INSTALL_DIR: &str = crate::remote_cmd::INSTALL_DIR;

/// Runs `command` on the host, feeding it `input`; returns its stdout.
fn run(d: &SshDest, opts: &ConnectOptions, command: &str, input: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut t = start_remote(d, opts, &RemoteCommand::plain(command))?;
    let streams = t.streams()?;
    let mut to = streams.to;
    let mut from = streams.from;
    let data = input.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        if let Some(data) = data {
            to.write_all(&data)?;
        }
        to.flush()
    });
    let mut out = Vec::new();
    from.read_to_end(&mut out)
        .map_err(|e| Error::Transport(format!("reading from {}: {e}", d.host)))?;
    let wrote = writer
        .join()
        .map_err(|_| Error::Unexpected("the upload thread panicked".into()))?;
    t.finish()?;
    wrote.map_err(|e| Error::Transport(format!("sending to {}: {e}", d.host)))?;
    Ok(out)
}

/// The local system and machine, as `uname -sm` prints them.
pub fn local_platform() -> String {
    let u = rustix::system::uname();
    format!(
        "{} {}",
        u.sysname().to_string_lossy(),
        u.machine().to_string_lossy()
    )
}

/// Installs the helper next to the running `offsnap` on the host; returns
/// what the installed helper says its version is.
pub fn install(d: &SshDest, opts: &ConnectOptions) -> Result<String> {
    let theirs = String::from_utf8_lossy(&run(d, opts, "uname -sm", None)?)
        .trim()
        .to_string();
    let ours = local_platform();
    if theirs != ours {
        return Err(Error::Usage(format!(
            "{} runs {theirs}, this machine {ours}: this offsnap-remote cannot run there. \
             Build it on the host instead: install Rust (rustup.rs), then \
             `cargo install offsnap-remote` (or `cargo install --path remote` from a clone)",
            d.host
        )));
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::Environment(format!("finding this program: {e}")))?;
    let helper = exe.with_file_name("offsnap-remote");
    let binary = std::fs::read(&helper).map_err(|e| {
        Error::Usage(format!(
            "{}: {e}; build it first (cargo build --release -p offsnap-remote)",
            helper.display()
        ))
    })?;
    let upload = format!(
        "set -e; mkdir -p \"$HOME/{INSTALL_DIR}\"; t=\"$HOME/{INSTALL_DIR}/.offsnap-remote.$$\"; \
         cat > \"$t\"; chmod 755 \"$t\"; mv -f \"$t\" \"$HOME/{INSTALL_DIR}/offsnap-remote\""
    );
    run(d, opts, &upload, Some(&binary))?;
    let version = run(
        d,
        opts,
        &format!("\"$HOME/{INSTALL_DIR}/offsnap-remote\" --version"),
        None,
    )?;
    Ok(offsnap_protocol::text::shown(
        String::from_utf8_lossy(&version).trim().as_bytes(),
    ))
}
