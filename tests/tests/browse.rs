//! `offsnap browse` in a real browser: headless Chromium loads the page
//! served for a real backup with several snapshots. The timeline lists
//! every snapshot, folders list what the snapshot holds, a file's versions
//! are those of `offsnap versions`, downloads are the stored bytes, a
//! folder's `.tar` extracts to the snapshot's tree, restore into a
//! directory refuses to overwrite until confirmed; requests without the
//! token, or for paths outside the set, get nothing. The screenshots in
//! `docs/` are taken here.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use offsnap_tests::browser::{self, Browser, attrs};
use offsnap_tests::random::{Rng, make_tree};
use offsnap_tests::*;

/// A running `offsnap browse`, ended when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(s: &Scratch, extra: &[&str]) -> Server {
        let mut cmd = s.command(None);
        cmd.arg("browse")
            .args(["--set", "t", "--no-open"])
            .args(extra)
            .arg("dest")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_string();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
            "printed {url:?}"
        );
        Server { child, url }
    }

    /// `http://127.0.0.1:PORT` without the token.
    fn origin(&self) -> &str {
        let rest = &self.url["http://".len()..];
        &self.url[..("http://".len() + rest.find('/').unwrap())]
    }

    /// The token part of the URL.
    fn token(&self) -> &str {
        self.url[self.origin().len()..].trim_matches('/')
    }

    /// An absolute address from a link on a page.
    fn at(&self, href: &str) -> String {
        format!("{}{href}", self.origin())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// Status and body of a GET.
fn get(url: &str) -> (u16, Vec<u8>) {
    let mut r = agent().get(url).call().unwrap();
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    (status, body)
}

/// The status line's code and the body of a request written as is (no
/// client normalizes its path).
fn raw_get(origin: &str, target: &str) -> (u16, String) {
    let addr = origin.trim_start_matches("http://");
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    write!(
        sock,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    sock.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.split(' ').nth(1).unwrap().parse().unwrap();
    (code, text)
}

/// The one link on a page whose address contains every one of `parts`.
fn link(dom: &str, parts: &[&str]) -> String {
    let found: Vec<String> = attrs(dom, "href")
        .into_iter()
        .filter(|h| parts.iter().all(|p| h.contains(p)))
        .collect();
    assert!(!found.is_empty(), "no link with {parts:?} on the page");
    found[0].clone()
}

/// Names of a directory as the page's `data-path`s would be.
fn listing(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            if prefix.is_empty() {
                n
            } else {
                format!("{prefix}/{n}")
            }
        })
        .collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A source with history: notes that change (and change back), photos,
/// a project with a hard link, a random tree; snapshots over three weeks.
fn history(s: &Scratch) -> Vec<String> {
    let src = s.src();
    let mut rng = Rng::new(16);
    fs::create_dir_all(src.join("projects/app")).unwrap();
    fs::create_dir_all(src.join("photos")).unwrap();
    make_tree(&mut rng, &src.join("projects/app"), 40);
    let notes = src.join("notes.txt");
    let (a, b, c): (&[u8], &[u8], &[u8]) = (
        b"Shopping: milk, eggs\n",
        b"Shopping: milk, eggs, bread\nCall the plumber on Monday.\n",
        b"Shopping: milk, eggs, bread, coffee\nCall the plumber on Monday.\nBook the train to Lyon.\n",
    );
    // The notes as each snapshot sees them: changed, kept, changed back.
    let texts = [a, a, b, b, b, c, b];
    let mut snaps = Vec::new();
    let days = [0u32, 1, 2, 7, 9, 14, 20];
    for (i, d) in days.iter().enumerate() {
        let t = 1_767_225_600 + i64::from(*d) * 86_400;
        if i == 0 || texts[i] != texts[i - 1] {
            write_file(&notes, texts[i], 0o644, (t + 33_000, 123_456_789));
        }
        let photo = src.join(format!("photos/img{i:02}.raw"));
        let data = rng.bytes((i % 4 + 1) * 700_000);
        write_file(&photo, &data, 0o640, (t, 5));
        if i == 2 {
            fs::hard_link(
                src.join("photos/img00.raw"),
                src.join("projects/img00-link.raw"),
            )
            .unwrap();
        }
        snaps.push(s.backup(&day(*d, 3600 * (i as u32 + 1))));
    }
    snaps
}

fn config(s: &Scratch) -> PathBuf {
    let path = s.path("browse.toml");
    fs::write(
        &path,
        "[profiles.p]\nset = \"t\"\n\n[profiles.p.retention]\nkeep_last = 2\nkeep_daily = 3\nkeep_weekly = 2\n",
    )
    .unwrap();
    path
}

#[test]
fn the_page_shows_history_and_gives_back_what_the_snapshots_hold() {
    let Some(exe) = browser::chromium() else {
        return;
    };
    let b = Browser::new(exe);
    let s = Scratch::new();
    let snaps = history(&s);
    let cfg = config(&s);
    let server = Server::start(&s, &["--config", cfg.to_str().unwrap(), "--profile", "p"]);
    let last = snaps.last().unwrap();
    let snapdir = s.set_dir().join(last);

    // The timeline: a bar and a row for every snapshot, coloured by
    // the retention rules (some kept, the rest removed by the next prune).
    let dom = b.dom(&server.url);
    let listed = attrs(&dom, "data-snapshot");
    assert_eq!(listed.len(), 2 * snaps.len(), "a bar and a row each");
    assert_eq!(sorted(listed[..snaps.len()].to_vec()), snaps);
    assert_eq!(sorted(listed[snaps.len()..].to_vec()), snaps);
    assert!(
        dom.contains("k-newest") && dom.contains("k-pruned"),
        "retention colours"
    );
    b.screenshot(
        &server.url,
        (1200, 760),
        &docs().join("browse-timeline.png"),
    );

    // A snapshot, then a folder of it: the entries are the snapshot's.
    let root = b.dom(&server.at(&link(&dom, &[&format!("/snap/{last}")])));
    assert_eq!(sorted(attrs(&root, "data-path")), listing(&snapdir, ""));
    let src = b.dom(&server.at(&link(&root, &["/snap/", "path=src"])));
    assert_eq!(
        sorted(attrs(&src, "data-path")),
        listing(&snapdir.join("src"), "src")
    );
    let app_href = format!("/snap/{last}?path=src/projects/app");
    let projects = b.dom(&server.at(&link(&src, &["/snap/", "path=src/projects"])));
    let app = b.dom(&server.at(&link(&projects, &[&app_href])));
    assert_eq!(
        sorted(attrs(&app, "data-path")),
        listing(&snapdir.join("src/projects/app"), "src/projects/app")
    );

    // A file's versions: those `offsnap versions` lists, newest first.
    let versions_url = server.at(&link(&src, &["/versions?", "path=src/notes.txt"]));
    let vdom = b.dom(&versions_url);
    let out = s.offsnap(
        None,
        &[&"versions", &"--set", &"t", &s.dest(), &"src/notes.txt"],
    );
    assert_ok(&out);
    let cli: Vec<(String, String)> = stdout(&out)
        .lines()
        .skip(1) // the header
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap().to_string(), w.next().unwrap().to_string())
        })
        .collect();
    let page: Vec<(String, String)> = attrs(&vdom, "data-first")
        .into_iter()
        .zip(attrs(&vdom, "data-size"))
        .rev()
        .collect();
    assert_eq!(page, cli);
    assert_eq!(cli.len(), 4, "notes.txt changed thrice: {cli:?}");
    assert!(vdom.contains("Call the plumber") || vdom.contains("Shopping: milk, eggs"));
    assert!(vdom.contains("id=\"preview\""), "a text preview");
    b.screenshot(
        &versions_url,
        (1200, 620),
        &docs().join("browse-versions.png"),
    );

    // Downloads: a file byte for byte, a large one too.
    let (code, body) =
        get(&server.at(&link(&src, &["/file/", "path=src/notes.txt", "download=1"])));
    assert_eq!(code, 200);
    assert_eq!(body, fs::read(snapdir.join("src/notes.txt")).unwrap());
    let photos = b.dom(&server.at(&link(&src, &["/snap/", "path=src/photos"])));
    let (code, body) = get(&server.at(&link(&photos, &["/file/", "img03.raw", "download=1"])));
    assert_eq!(code, 200);
    assert_eq!(
        body,
        fs::read(snapdir.join("src/photos/img03.raw")).unwrap()
    );

    // A folder as .tar (GNU tar extracts it): the snapshot's tree, with
    // modes, mtimes to the nanosecond, symlinks and the hard link.
    let (code, tarball) = get(&server.at(&link(&root, &["/tar/", "path=src"])));
    assert_eq!(code, 200);
    let out_dir = s.path("untarred");
    fs::create_dir(&out_dir).unwrap();
    let mut tar = std::process::Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xpf", "-", "-C"])
        .arg(&out_dir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    tar.stdin.take().unwrap().write_all(&tarball).unwrap();
    assert!(tar.wait().unwrap().success(), "tar could not extract it");
    assert_same_tree(&snapdir.join("src"), &out_dir.join("src"));

    // Restore into a directory: done, then refused while the file exists,
    // then done again once the overwrite is confirmed.
    let first = &snaps[0];
    let to = s.path("restored");
    let post = |overwrite: bool| -> String {
        let url = format!("{}restore/{first}", server.url);
        let mut form = vec![("path", "src/notes.txt"), ("to", to.to_str().unwrap())];
        if overwrite {
            form.push(("overwrite", "1"));
        }
        let mut r = agent().post(&url).send_form(form).unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.body_mut().read_to_string().unwrap()
    };
    let original = s.set_dir().join(first).join("src/notes.txt");
    let page = post(false);
    assert!(page.contains("id=result>Restored 1 entry "), "{page}");
    let same = |a: &Path, b: &Path| {
        use std::os::unix::fs::MetadataExt;
        let (ma, mb) = (fs::metadata(a).unwrap(), fs::metadata(b).unwrap());
        assert_eq!(fs::read(a).unwrap(), fs::read(b).unwrap());
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec(), ma.mode()),
            (mb.mtime(), mb.mtime_nsec(), mb.mode())
        );
    };
    same(&original, &to.join("src/notes.txt"));
    fs::write(to.join("src/notes.txt"), b"edited since").unwrap();
    let page = post(false);
    assert!(page.contains("refusing to overwrite"), "{page}");
    assert!(page.contains("name=\"overwrite\"") || page.contains("name=overwrite"));
    assert_eq!(fs::read(to.join("src/notes.txt")).unwrap(), b"edited since");
    let page = post(true);
    assert!(page.contains("id=result>Restored "), "{page}");
    same(&original, &to.join("src/notes.txt"));

    // A diff between two snapshots lists what changed between them.
    let diff = b.dom(&format!("{}diff?a={}&b={}", server.url, snaps[1], snaps[2]));
    assert!(diff.contains("src/photos/img02.raw") && diff.contains("src/notes.txt"));
}

/// Where the screenshots shown in the README go.
fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

#[test]
fn without_the_token_or_outside_the_set_nothing_is_served() {
    let s = Scratch::new();
    fs::create_dir_all(s.src().join("d")).unwrap();
    write_file(
        &s.src().join("d/f.txt"),
        b"inside",
        0o644,
        (1_700_000_000, 0),
    );
    // Something beside the set that a way out would reach.
    write_file(
        &s.path("secret.txt"),
        b"outside the set",
        0o600,
        (1_700_000_000, 0),
    );
    s.backup(&day(0, 0));
    let server = Server::start(&s, &[]);
    let t = server.token().to_string();
    let origin = server.origin().to_string();

    for target in [
        "/".to_string(),
        "/snap/latest".to_string(),
        format!("/{}/", &t[..t.len() - 1]),
        format!("/{t}x/"),
        format!("/{}/", t.to_uppercase()),
        format!("/x/{t}/"),
        format!("/{t}"),
    ] {
        let (code, text) = raw_get(&origin, &target);
        assert_eq!(code, 403, "{target}: {text}");
        assert!(!text.contains("inside"), "{target}");
    }
    let (code, text) = raw_get(&origin, &format!("/{t}/file/latest?path=src/d/f.txt"));
    assert_eq!(code, 200, "{text}");
    assert!(text.ends_with("inside"));

    for path in [
        "../secret.txt",
        "../../secret.txt",
        "src/../../secret.txt",
        "%2e%2e/secret.txt",
        "%2E%2E%2Fsecret.txt",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "src//d/f.txt",
        "src/./d/f.txt",
        "..",
    ] {
        for what in ["file", "tar", "snap"] {
            let (code, text) = raw_get(&origin, &format!("/{t}/{what}/latest?path={path}"));
            assert!(code == 400 || code == 404, "{what} {path}: {code}");
            assert!(
                !text.contains("outside the set") && !text.contains("root:"),
                "{what} {path}"
            );
        }
        let (code, _) = raw_get(&origin, &format!("/{t}/versions?path={path}"));
        assert!(code == 400 || code == 404, "versions {path}: {code}");
    }
    // Paths around the routes themselves.
    for target in [
        format!("/{t}/../secret.txt"),
        format!("/{t}/file/../../secret.txt"),
        format!("/{t}/file/..%2f..%2fsecret.txt?path=secret.txt"),
        format!("/{t}/file/latest?path=secret.txt"),
    ] {
        let (code, text) = raw_get(&origin, &target);
        assert!(
            code == 400 || code == 403 || code == 404,
            "{target}: {code}"
        );
        assert!(!text.contains("outside the set"), "{target}");
    }
}

#[test]
fn a_read_only_helper_serves_the_page_and_its_downloads() {
    let s = Scratch::new();
    fs::create_dir_all(s.src().join("d")).unwrap();
    write_file(&s.src().join("d/f.txt"), b"one", 0o644, (1_700_000_000, 0));
    s.backup(&day(0, 0));
    write_file(&s.src().join("d/f.txt"), b"two!", 0o644, (1_700_000_100, 0));
    s.backup(&day(1, 0));
    // The helper as a confined key's forced command would run it.
    let wrapper = s.path("read-only-helper");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} \"$1\" --read-only \"$2\" \"$3\"\n",
            remote_bin().display()
        ),
    )
    .unwrap();
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let server = Server::start(&s, &["--remote-cmd", wrapper.to_str().unwrap()]);
    let (code, page) = get(&server.url);
    assert_eq!(code, 200);
    let page = String::from_utf8(page).unwrap();
    assert_eq!(attrs(&page, "data-snapshot").len(), 4, "{page}");
    let (code, body) = get(&format!(
        "{}file/latest?path=src/d/f.txt&download=1",
        server.url
    ));
    assert_eq!((code, body.as_slice()), (200, b"two!".as_slice()));
    let (code, v) = get(&format!("{}versions?path=src/d/f.txt", server.url));
    assert_eq!(code, 200);
    assert_eq!(attrs(&String::from_utf8(v).unwrap(), "data-first").len(), 2);
}
