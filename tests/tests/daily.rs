//! Daily use: the run log behind `offsnap status`, and `schedule`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::Command;

use offsnap_tests::*;

fn init(s: &Scratch) {
    write_file(&s.src().join("a"), b"a", 0o644, (1_700_000_000, 0));
    let out = s.offsnap(None, &[&"init", &"--profile", &"home", &s.dest(), &s.src()]);
    assert_ok(&out);
}

#[test]
fn status_reports_the_last_success_and_failure() {
    let s = Scratch::new();
    init(&s);
    // Nothing yet: non-zero, for monitoring.
    let out = s.offsnap(None, &[&"status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("no successful backup"),
        "{}",
        stdout(&out)
    );

    let out = s.offsnap(Some(&day(0, 0)), &[&"backup"]);
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    let out = s.offsnap(None, &[&"status", &"--max-age", &"1h"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains(&snap) && text.contains("1 files"), "{text}");

    // A failed run is shown, and an old success fails --max-age.
    fs::write(
        s.path("config/offsnap/config.toml"),
        format!(
            "default = \"home\"\n[profiles.home]\nsources = [{:?}]\ndestination = {:?}\n",
            s.src().display().to_string(),
            "/sys/offsnap-cannot-write-here",
        ),
    )
    .unwrap();
    let out = s.offsnap(Some(&day(1, 0)), &[&"backup"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = s.offsnap(None, &[&"status", &"--max-age", &"1s"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("last failure") && text.contains("offsnap-cannot-write-here"),
        "{text}"
    );
    assert!(text.contains(&snap), "{text}");
    let log = fs::read_to_string(s.path("state/offsnap/runs.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2);
}

#[test]
fn schedule_writes_valid_units_or_a_crontab_line() {
    let s = Scratch::new();
    init(&s);
    let out = s.offsnap(
        None,
        &[&"schedule", &"install", &"--every", &"6h", &"--dry-run"],
    );
    assert_ok(&out);
    let text = stdout(&out);
    // Every scheduler checks hourly and backs up once the newest snapshot
    // is an hour short of the interval old: the timer (Persistent=true
    // fires on wake for a check missed asleep), cron and launchd alike.
    assert!(
        text.contains("\nOnCalendar=hourly\nPersistent=true\n"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("ExecStart=/")
            && l.ends_with("/offsnap backup --profile home --if-older 5h")),
        "{text}"
    );
    assert!(
        text.contains("\n0 * * * * ") && text.contains("backup --profile home --if-older 5h"),
        "{text}"
    );
    assert!(
        text.contains("<key>StartInterval</key>\n  <integer>3600</integer>")
            && text.contains("<string>--if-older</string>\n    <string>5h</string>"),
        "{text}"
    );

    // The unit files pass systemd's own check, where it is installed.
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    if analyze.is_ok_and(|o| o.status.success()) {
        let dir = s.path("units");
        fs::create_dir(&dir).unwrap();
        let mut current = None;
        let mut files: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if let Some(p) = line
                .strip_prefix("# ")
                .filter(|p| p.ends_with(".service") || p.ends_with(".timer"))
            {
                let name = std::path::Path::new(p)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.push((name, String::new()));
                current = Some(files.len() - 1);
            } else if line.starts_with("# without systemd") {
                current = None;
            } else if let Some(i) = current {
                files[i].1.push_str(line);
                files[i].1.push('\n');
            }
        }
        assert_eq!(files.len(), 2);
        for (name, body) in &files {
            fs::write(dir.join(name), body).unwrap();
        }
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.join(&files[0].0))
            .arg(dir.join(&files[1].0))
            .env("SYSTEMD_LOG_LEVEL", "warning")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || !err.contains("offsnap-home"),
            "systemd-analyze verify: {err}"
        );
    } else {
        offsnap_tests::skip::skip(
            None,
            "systemd-analyze is not installed; unit files not verified",
        );
    }

    // Without a systemd user manager, install prints the crontab line.
    let out = s.offsnap(None, &[&"schedule", &"install", &"--every", &"15m"]);
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("*/15 * * * * "),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("crontab -e"), "{}", stderr(&out));
    // Nothing installed, so status says so; remove is harmless.
    let out = s.offsnap(None, &[&"schedule", &"status"]);
    assert_eq!(out.status.code(), Some(1));
    let out = s.offsnap(None, &[&"schedule", &"remove"]);
    assert_ok(&out);

    // A bad interval is a clear error.
    let out = s.offsnap(None, &[&"schedule", &"install", &"--every", &"7m"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--every"), "{}", stderr(&out));
}

#[test]
fn no_terminal_no_progress_and_a_terminal_shows_it() {
    let s = Scratch::new();
    let mut rng = offsnap_tests::random::Rng::new(4);
    offsnap_tests::random::make_tree(&mut rng, &s.src(), 200);
    // Not a terminal (cron, systemd): nothing on stderr but errors.
    let out = s.offsnap(
        Some(&day(0, 0)),
        &[&"backup", &"--set", &"t", &s.src(), &s.dest()],
    );
    assert_ok(&out);
    assert_eq!(stderr(&out), "", "non-terminal runs must be quiet");

    // A terminal, driven through tmux: the bar and the summary line.
    if !offsnap_tests::terminal::Tmux::here() {
        return;
    }
    let done = s.path("done");
    let script = format!(
        "XDG_CACHE_HOME={cache} XDG_CONFIG_HOME={config} XDG_STATE_HOME={state} OFFSNAP_NOW={now} {bin} backup --set t {src} {dest}; touch {done}; sleep 30",
        cache = s.path("cache").display(),
        config = s.path("config").display(),
        state = s.path("state").display(),
        now = day(1, 0),
        bin = offsnap_bin().display(),
        src = s.src().display(),
        dest = s.dest().display(),
        done = done.display(),
    );
    let tmux = offsnap_tests::terminal::Tmux::start("daily", (160, 20), &script);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run in tmux never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let screen = tmux.screen();
    assert!(
        screen.contains("B/s") && screen.contains('['),
        "no progress bar:\n{screen}"
    );
    assert!(
        screen.contains(" files: ") && screen.contains(" unchanged, "),
        "no summary:\n{screen}"
    );
}

/// A profile `home` backing `src/` up to `dest`, with `extra` lines.
fn profile(s: &Scratch, dest: &std::path::Path, extra: &str) {
    fs::create_dir_all(s.path("config/offsnap")).unwrap();
    fs::write(
        s.path("config/offsnap/config.toml"),
        format!(
            "default = \"home\"\n[profiles.home]\nsources = [{:?}]\ndestination = {:?}\n{extra}",
            s.src().display().to_string(),
            dest.display().to_string(),
        ),
    )
    .unwrap();
}

#[test]
fn a_schedule_waits_for_mains_power_names_its_hooks_and_passes_the_agent() {
    let s = Scratch::new();
    let hook = "notify-send 'offsnap failed' \"$OFFSNAP_ERROR\"";
    profile(&s, &s.dest(), &format!("on_failure = {hook:?}\n"));
    let out = s.offsnap(
        None,
        &[&"schedule", &"install", &"--every", &"1d", &"--dry-run"],
    );
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("\nConditionACPower=true\n"), "{text}");
    assert!(
        text.contains(&format!("the profile's on_failure command: {hook}")),
        "{text}"
    );
    // The crontab line checks hourly and backs up once a day is nearly up.
    assert!(
        text.contains("\n0 * * * * ") && text.contains("backup --profile home --if-older 23h"),
        "{text}"
    );

    // Allowed on battery: no condition.
    profile(&s, &s.dest(), "on_battery = true\n");
    let out = s.offsnap(None, &[&"schedule", &"install", &"--dry-run"]);
    assert_ok(&out);
    assert!(
        !stdout(&out).contains("ConditionACPower"),
        "{}",
        stdout(&out)
    );

    // An SSH destination: the agent's socket under the runtime directory
    // is handed to the service as %t/…, which outlives the login.
    profile(&s, std::path::Path::new("backup@host.invalid:/b"), "");
    let runtime = s.path("no-runtime");
    fs::create_dir_all(runtime.join("agent")).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(runtime.join("agent/sock")).unwrap();
    let out = s
        .command(None)
        .args(["schedule", "install", "--dry-run"])
        .env("SSH_AUTH_SOCK", runtime.join("agent/sock"))
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(
        stdout(&out).contains("\nEnvironment=SSH_AUTH_SOCK=%t/agent/sock\n"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(&format!(
            "SSH_AUTH_SOCK={}",
            runtime.join("agent/sock").display()
        )),
        "the crontab line lacks the agent: {}",
        stdout(&out)
    );

    // A per-login socket elsewhere is passed on, with a warning.
    fs::create_dir_all(s.path("login-agent")).unwrap();
    let login = s.path("login-agent/sock");
    let _login_listener = std::os::unix::net::UnixListener::bind(&login).unwrap();
    let out = s
        .command(None)
        .args(["schedule", "install", "--dry-run"])
        .env("SSH_AUTH_SOCK", &login)
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(
        stdout(&out).contains(&format!(
            "\nEnvironment=SSH_AUTH_SOCK={}\n",
            login.display()
        )),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("changes with each login"),
        "{}",
        stderr(&out)
    );

    // No agent, and the only key needs a passphrase: install says so.
    let key = s.path("key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    profile(
        &s,
        std::path::Path::new("backup@host.invalid:/b"),
        &format!("identity = {:?}\n", key.display().to_string()),
    );
    let out = s
        .command(None)
        .args(["schedule", "install", "--dry-run"])
        .env_remove("SSH_AUTH_SOCK")
        .env("HOME", s.path("home"))
        .output()
        .unwrap();
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the key {} needs a passphrase", key.display()))
            && err.contains("no ssh-agent will be there"),
        "{err}"
    );
    assert!(!stdout(&out).contains("SSH_AUTH_SOCK"), "{}", stdout(&out));
}

/// The JSON a hook wrote, and the environment it saw.
fn hook_output(s: &Scratch) -> (serde_json::Value, String) {
    let json = fs::read_to_string(s.path("hook.json")).unwrap();
    let env = fs::read_to_string(s.path("hook.env")).unwrap();
    (serde_json::from_str(&json).unwrap(), env)
}

#[test]
fn on_failure_and_on_success_run_with_the_run_on_stdin() {
    let s = Scratch::new();
    write_file(&s.src().join("a"), b"hello", 0o644, (1_700_000_000, 0));
    let hooks = format!(
        "on_failure = \"cat > {json}; echo failed $OFFSNAP_STATUS $OFFSNAP_PROFILE > {env}\"\n\
         on_success = \"cat > {json}; echo ok $OFFSNAP_STATUS $OFFSNAP_SNAPSHOT > {env}\"\n",
        json = s.path("hook.json").display(),
        env = s.path("hook.env").display(),
    );
    // A destination that cannot be written: the run fails, on_failure runs.
    profile(
        &s,
        std::path::Path::new("/sys/offsnap-cannot-write-here"),
        &hooks,
    );
    let out = s.offsnap(Some(&day(0, 0)), &[&"backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let (json, env) = hook_output(&s);
    assert_eq!(env, "failed failure home\n");
    assert_eq!(json["status"], "failure");
    assert_eq!(json["ok"], false);
    assert_eq!(json["profile"], "home");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("offsnap-cannot-write-here"),
        "{json}"
    );

    // A good run: on_success, with the report of the snapshot made.
    profile(&s, &s.dest(), &hooks);
    let out = s.offsnap(Some(&day(1, 0)), &[&"backup", &"--set", &"t"]);
    assert_ok(&out);
    let snap = stdout(&out).trim().to_string();
    let (json, env) = hook_output(&s);
    assert_eq!(env, format!("ok success {snap}\n"));
    assert_eq!(json["status"], "success");
    assert_eq!(json["snapshot"], snap.as_str());
    assert_eq!(json["report"]["snapshot"], snap.as_str());
    assert_eq!(json["report"]["files_scanned"], 1);
    let restored = s.restore(&snap);
    assert_same_tree(&s.src(), &restored.join("src"));

    // Sources and a destination on the command line are not the
    // profile's run: no hook.
    fs::remove_file(s.path("hook.json")).unwrap();
    let out = s.offsnap(
        Some(&day(2, 0)),
        &[
            &"backup",
            &"--set",
            &"t",
            &s.src(),
            &"/sys/offsnap-cannot-write-here",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!s.path("hook.json").exists());
}

#[test]
fn if_older_skips_a_recent_set_and_backs_up_an_old_one() {
    let s = Scratch::new();
    write_file(&s.src().join("a"), b"one", 0o644, (1_700_000_000, 0));
    let hour_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string();
    let first = s.backup(&hour_ago);
    write_file(&s.src().join("b"), b"two", 0o600, (1_700_000_100, 0));
    let backup = |age: &str| {
        s.offsnap(
            None,
            &[
                &"backup",
                &"--set",
                &"t",
                &"--if-older",
                &age,
                &s.src(),
                &s.dest(),
            ],
        )
    };
    // The newest snapshot is an hour old: a day has not passed.
    let out = backup("1d");
    assert_ok(&out);
    assert_eq!(stdout(&out), "", "a skipped run names no snapshot");
    assert_eq!(dated_snapshots(&s.set_dir()), vec![first.clone()]);
    // Older than 1800 s: this run backs up.
    let out = backup("1800s");
    assert_ok(&out);
    let second = stdout(&out).trim().to_string();
    assert_eq!(dated_snapshots(&s.set_dir()), vec![first, second.clone()]);
    let restored = s.restore(&second);
    assert_same_tree(&s.src(), &restored.join("src"));
    // The check reads the set, not this machine: a client with no run
    // log of its own (another state directory) skips it as well.
    let out = s
        .command(None)
        .args(["backup", "--set", "t", "--if-older", "1d"])
        .arg(s.src())
        .arg(s.dest())
        .env("XDG_STATE_HOME", s.path("other-state"))
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(dated_snapshots(&s.set_dir()).len(), 2);
}
