//! The command line that starts the helper on an SSH host, and what to
//! say when the host's shell cannot find the program it names.
//!
//! The helper is looked for in `~/.local/bin` (where `offsnap remote
//! install` puts it), then on the login's PATH, also when `--remote-cmd`
//! wraps it in `env`, `nice`, `ionice` or `sudo` (sudo resets the PATH, so
//! the shell finds the program for it).

/// The helper's program name on SSH hosts.
pub const DEFAULT_HELPER: &str = "offsnap-remote";

/// Where the helper is looked for first, relative to the login's home.
pub const INSTALL_DIR: &str = ".local/bin";

/// A command run on an SSH host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommand {
    /// The command line, for the login's shell.
    pub line: String,
    /// When it starts the helper: the program, and the host as the user
    /// named it (for `offsnap remote install HOST`).
    helper: Option<(String, String)>,
}

/// Programs that run the command after their own options.
const WRAPPERS: &[&str] = &[
    "env", "nice", "ionice", "sudo", "doas", "nohup", "setsid", "chrt", "taskset",
];

/// Options of the wrappers that take a separate argument.
fn takes_argument(wrapper: &str, opt: &str) -> bool {
    let with_arg: &[&str] = match wrapper {
        "env" => &["-u", "-C", "-S", "--unset", "--chdir"],
        "nice" => &["-n", "--adjustment"],
        "ionice" => &["-c", "-n", "-p", "-P", "-u", "--class", "--classdata"],
        "sudo" => &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"],
        "doas" => &["-u", "-C"],
        _ => &[],
    };
    with_arg.contains(&opt)
}

/// The index of the word that names the program `words` finally runs,
/// past wrappers, their options and `NAME=value` settings.
pub fn program_index(words: &[String]) -> usize {
    let mut i = 0;
    while i < words.len() {
        let base = words[i].rsplit('/').next().unwrap_or(&words[i]);
        if !WRAPPERS.contains(&base) {
            return i;
        }
        let wrapper = base.to_string();
        i += 1;
        // chrt and taskset take a priority or CPU list before the command.
        let mut positional = usize::from(matches!(wrapper.as_str(), "chrt" | "taskset"));
        while i < words.len() {
            let w = words[i].as_str();
            if w == "--" {
                i += 1;
                break;
            } else if w.starts_with('-') && w.len() > 1 {
                i += if takes_argument(&wrapper, w) { 2 } else { 1 };
            } else if wrapper == "env" && w.contains('=') {
                i += 1;
            } else if positional > 0 {
                positional -= 1;
                i += 1;
            } else {
                break;
            }
        }
    }
    words.len().saturating_sub(1)
}

impl RemoteCommand {
    /// Any command (no helper behind it).
    pub fn plain(line: impl Into<String>) -> RemoteCommand {
        RemoteCommand {
            line: line.into(),
            helper: None,
        }
    }

    /// `[WRAPPERS] HELPER serve --root PATH`, with `~/.local/bin` first on
    /// the PATH; `host` is the host as the user named it (`user@host`).
    pub fn helper(remote_cmd: Option<&[String]>, path: &str, host: &str) -> RemoteCommand {
        let words: Vec<String> = match remote_cmd {
            Some(w) if !w.is_empty() => w.to_vec(),
            _ => vec![DEFAULT_HELPER.to_string()],
        };
        let at = program_index(&words);
        let program = words[at].clone();
        let through_sudo = words[..at]
            .iter()
            .any(|w| matches!(w.rsplit('/').next(), Some("sudo" | "doas")));
        let mut cmd: Vec<String> = words.iter().map(|w| shell_words::quote(w).into()).collect();
        if through_sudo && !program.contains('/') {
            let p = shell_words::quote(&program);
            cmd[at] = format!("\"$(command -v {p} || echo {p})\"");
        }
        // `~` and `~/x` mean the login's home, where the command starts, as
        // a shell would expand them for scp and rsync.
        let path = match path {
            "~" => ".",
            p => p.strip_prefix("~/").unwrap_or(p),
        };
        let path = if path.is_empty() { "." } else { path };
        RemoteCommand {
            line: format!(
                "PATH=\"$HOME/{INSTALL_DIR}:$PATH\" exec {} serve --root {}",
                cmd.join(" "),
                shell_words::quote(path)
            ),
            helper: Some((program, host.to_string())),
        }
    }

    /// The program this command finally runs, as named.
    pub fn program(&self) -> String {
        match &self.helper {
            Some((p, _)) => p.clone(),
            None => self
                .line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string(),
        }
    }

    /// What to say when the host's shell reports (exit status 127) that
    /// the program is not there.
    pub fn missing(&self, on: &str) -> String {
        match &self.helper {
            Some((program, host)) if program.contains('/') => format!(
                "the helper {program} was not found on {on}. Install it there with \
                 `offsnap remote install {host}` (it goes to ~/{INSTALL_DIR}/{DEFAULT_HELPER}), \
                 or correct the path given with --remote-cmd"
            ),
            Some((program, host)) => format!(
                "the helper {program:?} was not found on {on} (looked for in ~/{INSTALL_DIR} \
                 and on that login's PATH). Install it there with `offsnap remote install \
                 {host}`, or give its full path with --remote-cmd"
            ),
            None => format!("{:?} was not found on {on}", self.program()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        shell_words::split(s).unwrap_or_default()
    }

    #[test]
    fn the_helper_is_found_behind_wrappers() {
        for (cmd, program) in [
            ("offsnap-remote", "offsnap-remote"),
            ("/opt/bin/offsnap-remote", "/opt/bin/offsnap-remote"),
            ("env OFFSNAP_NOW=x offsnap-remote", "offsnap-remote"),
            ("env -u LANG A=1 B=2 offsnap-remote", "offsnap-remote"),
            ("nice -n 19 ionice -c3 offsnap-remote", "offsnap-remote"),
            ("nice -n19 ionice -c 3 -n 7 my-helper", "my-helper"),
            ("sudo -u backup -- offsnap-remote", "offsnap-remote"),
            ("/usr/bin/sudo -n env X=1 offsnap-remote", "offsnap-remote"),
            ("chrt -i 0 offsnap-remote", "offsnap-remote"),
        ] {
            let w = words(cmd);
            assert_eq!(w[program_index(&w)], program, "{cmd}");
        }
    }

    #[test]
    fn command_lines_put_local_bin_first() {
        let line = |cmd: Option<&str>, path: &str| {
            let w = cmd.map(words);
            RemoteCommand::helper(w.as_deref(), path, "h").line
        };
        let p = "PATH=\"$HOME/.local/bin:$PATH\" exec ";
        assert_eq!(
            line(None, "~/backups"),
            format!("{p}offsnap-remote serve --root backups")
        );
        assert_eq!(line(None, "~"), format!("{p}offsnap-remote serve --root ."));
        assert_eq!(
            line(None, "/srv/my backups"),
            format!("{p}offsnap-remote serve --root '/srv/my backups'")
        );
        assert_eq!(
            line(Some("env A='x y' offsnap-remote"), "/b"),
            format!("{p}env 'A=x y' offsnap-remote serve --root /b")
        );
        assert_eq!(
            line(Some("sudo -n offsnap-remote"), "/b"),
            format!(
                "{p}sudo -n \"$(command -v offsnap-remote || echo offsnap-remote)\" serve --root /b"
            )
        );
    }

    #[test]
    fn a_missing_helper_is_named_with_the_way_to_install_it() {
        let w = words("nice -n 5 env X=1 offsnap-remote");
        let m = RemoteCommand::helper(Some(&w), "/b", "alice@nas").missing("nas");
        assert!(
            m.contains("\"offsnap-remote\" was not found on nas")
                && m.contains("~/.local/bin")
                && m.contains("offsnap remote install alice@nas"),
            "{m}"
        );
        assert_eq!(
            RemoteCommand::plain("uname -sm").missing("nas"),
            "\"uname\" was not found on nas"
        );
    }
}
