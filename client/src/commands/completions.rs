//! `offsnap completions` and `offsnap man`: shell completions and a man
//! page, generated from the same definitions as the parser, so they never
//! drift from what `offsnap` accepts.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::error::{Error, Result};

/// `offsnap completions`' arguments.
#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    shell: Shell,
}

/// Prints the completion script for a shell.
pub fn run(args: CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "offsnap", &mut out);
    print_all(&out)
}

/// Prints the man page (roff) of `offsnap`, with a section for each
/// command and its options.
pub fn man() -> Result<ExitCode> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    let failed = |e| Error::io("the man page", e);
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .map_err(failed)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("offsnap {}", sub.get_name());
        writeln!(out, ".SH \"{}\"", name.to_uppercase()).map_err(failed)?;
        let page = clap_mangen::Man::new(sub.clone().bin_name(name));
        page.render_synopsis_section(&mut out).map_err(failed)?;
        page.render_description_section(&mut out).map_err(failed)?;
        page.render_options_section(&mut out).map_err(failed)?;
    }
    print_all(&out)
}

fn print_all(bytes: &[u8]) -> Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `offsnap man | head` closes the pipe early: not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Error::io("standard output", e)),
    }
}
