//! `offsnap init`: write a commented starter config file with one profile.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Args;

use crate::cli::ConfigArgs;
use crate::config;
use crate::dest::Dest;
use crate::error::{Error, Result};

/// `offsnap init`'s arguments.
#[derive(Args)]
pub struct InitArgs {
    #[command(flatten)]
    profile: ConfigArgs,
    /// Replace an existing config file
    #[arg(long)]
    force: bool,
    /// Where backups will go (a directory, or [user@]host:PATH).
    dest: String,
    /// What to back up [default: ~/Documents]
    sources: Vec<String>,
}

/// Runs `offsnap init`.
pub fn run(args: InitArgs) -> Result<ExitCode> {
    Dest::parse(&args.dest)?;
    let path = match &args.profile.config {
        Some(p) => p.clone(),
        None => config::default_path().ok_or_else(|| {
            Error::Environment("HOME is not set; name the file with --config".into())
        })?,
    };
    if path.exists() && !args.force {
        return Err(Error::Usage(format!(
            "{} exists already (edit it, or pass --force to replace it)",
            path.display()
        )));
    }
    let name = args.profile.profile.as_deref().unwrap_or("default");
    let text = config::starter(name, &args.dest, &args.sources);
    config::parse(&text).map_err(|e| Error::Usage(format!("starter config: {e}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    println!("{}", path.display());
    if std::io::stderr().is_terminal() {
        eprintln!("wrote profile {name:?}; edit it, then run: offsnap backup");
    }
    Ok(ExitCode::SUCCESS)
}
