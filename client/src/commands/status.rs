//! `offsnap status`: when the last good backup was, from this machine's
//! run log; fails when it is older than `--max-age`, for monitoring.

use std::process::ExitCode;

use clap::Args;

use crate::cli::ConfigArgs;
use crate::error::Result;
use crate::output::{ago, human_bytes, human_duration, local_time};
use crate::runlog::{self, Run};
use crate::settings::Settings;

/// `offsnap status`'s arguments.
#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    profile: ConfigArgs,
    /// Exit 1 if the last successful backup is older than this (e.g. 2d, 12h)
    #[arg(long, value_name = "DURATION", value_parser = offsnap_protocol::retention::parse_duration)]
    max_age: Option<i64>,
}

/// Runs `offsnap status`.
pub fn run(args: StatusArgs) -> Result<ExitCode> {
    let name = Settings::load(&(&args.profile).into())?.profile_name;
    let runs = runlog::read();
    let mine: Vec<&Run> = runs
        .iter()
        .filter(|r| name.is_none() || r.profile == name)
        .collect();
    let now = jiff::Timestamp::now();
    let age = |r: &Run| {
        r.time
            .parse::<jiff::Timestamp>()
            .map(|t| now.as_second() - t.as_second())
            .unwrap_or(i64::MAX)
    };
    let last_ok = mine.iter().rev().find(|r| r.ok);
    let last_fail = mine.iter().rev().find(|r| !r.ok);
    match last_ok {
        Some(r) => println!(
            "last backup: {} ({} ago), snapshot {} of set {} at {}: {} files, {} sent, took {}{}",
            local_time(&r.time),
            ago(age(r)),
            r.snapshot.as_deref().unwrap_or("?"),
            r.set,
            r.dest,
            r.files,
            human_bytes(r.bytes),
            human_duration(r.seconds),
            if r.partial { " (partial)" } else { "" }
        ),
        None => match &name {
            Some(n) => println!("no successful backup recorded for profile {n}"),
            None => println!("no successful backup recorded"),
        },
    }
    if let Some(f) = last_fail
        && last_ok.is_none_or(|ok| f.time > ok.time)
    {
        println!(
            "last failure: {} ({} ago): {}",
            local_time(&f.time),
            ago(age(f)),
            f.error.as_deref().unwrap_or("?")
        );
    }
    let stale = match (last_ok, args.max_age) {
        (None, _) => true,
        (Some(r), Some(max)) => age(r) > max,
        (Some(_), None) => false,
    };
    if stale {
        let within = args
            .max_age
            .map(|m| format!(" in the last {}", ago(m)))
            .unwrap_or_default();
        match &name {
            Some(n) => eprintln!("offsnap: profile {n} has no successful backup{within}"),
            None => eprintln!("offsnap: no backup has succeeded{within}"),
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
