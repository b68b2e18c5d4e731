//! The helper applying a client's delta pieces (remote backup.rs: `Op::Delta`,
//! `Op::DeltaPiece`s, `Op::End`) through the public `BackupRun` API, on a
//! real snapshot in a temporary directory. Each piece must be refused
//! exactly when an in-memory model refuses it (bad compression, bad
//! delta, a copy outside the base, output past the announced size), and
//! the end accepted exactly when the model rebuilt the announced size
//! (the end carries the model's hash, so acceptance also means the helper
//! wrote the same bytes). The run is then abandoned, leaving the base as it was.
//!
//! Input: the announced size (`u16`), then pieces: a kind byte (mod 3:
//! sent as it is; compressed by the target and sent with `zstd` set; sent
//! as it is with `zstd` set), a `u16` length and the bytes.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use offsnap_fuzz::layout::{Cursor, helper_base};
use offsnap_fuzz::model;
use offsnap_protocol::delta::parse;
use offsnap_protocol::{DELTA_PIECE_MAX, Hash, Meta, Op, RelPath, SetName};
use offsnap_remote::backup::BackupRun;
use offsnap_remote::set::Root;

struct Fixture {
    dir: tempfile::TempDir,
    root: Root,
    set: SetName,
    path: RelPath,
    base: Vec<u8>,
    meta: Meta,
    later: jiff::Timestamp,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// A root with one snapshot holding `f`, the base every delta applies to.
/// It lives in memory when it can (`/dev/shm`): the helper's fsyncs make a
/// directory on disk several times slower. libFuzzer leaves by `exit`,
/// which drops no static, so an exit hook removes it.
fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("offsnap-fuzz-")
                .tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("offsnap-fuzz-").tempdir()
        }
        .expect("a temporary directory");
        // SAFETY: registers a plain function with no preconditions.
        unsafe { libc::atexit(remove_fixture) };
        let root = Root::open(dir.path(), false).expect("the root opens");
        let set = SetName::new("fuzz").expect("a valid set name");
        let path = RelPath::new(b"f".to_vec()).expect("a valid path");
        let base = helper_base();
        let meta = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 0,
        };
        let first: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("a time");
        let (mut run, _, _) = BackupRun::start(&root, &set, first).expect("first run starts");
        let size = base.len() as u64;
        for op in [
            Op::File {
                path: path.clone(),
                meta,
                size,
                xattrs: Vec::new(),
            },
            Op::Data(base.clone()),
            Op::End {
                hash: Hash::of(&base),
            },
        ] {
            run.apply(op).expect("the base file is stored");
        }
        run.commit().expect("the base snapshot commits");
        Fixture {
            dir,
            root,
            set,
            path,
            base,
            meta,
            later: "2026-01-02T00:00:00Z".parse().expect("a time"),
        }
    })
}

extern "C" fn remove_fixture() {
    if let Some(fx) = FIXTURE.get() {
        let _ = std::fs::remove_dir_all(fx.dir.path());
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let mut input = Cursor::new(data);
    let size = u64::from(input.u16());
    let (mut run, _, _) = BackupRun::start(&fx.root, &fx.set, fx.later).expect("a run starts");
    run.apply(Op::Delta {
        path: fx.path.clone(),
        meta: fx.meta,
        size,
        xattrs: Vec::new(),
    })
    .expect("a delta against an existing base begins");
    let mut rebuilt = Vec::new();
    while !input.is_empty() {
        let kind = input.u8() % 3;
        let b = input.part();
        let (zstd, bytes) = match kind {
            0 => (false, b.to_vec()),
            1 => (true, zstd::bulk::compress(b, 1).expect("compresses")),
            _ => (true, b.to_vec()),
        };
        let expected = model_piece(&fx.base, zstd, &bytes, &mut rebuilt, size);
        let got = run.apply(Op::DeltaPiece { zstd, bytes });
        assert_eq!(
            got.is_ok(),
            expected.is_ok(),
            "helper {got:?}, model {expected:?}"
        );
        if got.is_err() {
            run.abort();
            return;
        }
    }
    let got = run.apply(Op::End {
        hash: Hash::of(&rebuilt),
    });
    assert_eq!(
        got.is_ok(),
        rebuilt.len() as u64 == size,
        "end: helper {got:?}, model rebuilt {} of {size} bytes",
        rebuilt.len()
    );
    // The helper rebuilt what the model did: it asks for nothing again.
    assert!(run.take_resends().is_empty(), "the helper rebuilt other bytes than the model");
    run.abort();
});

/// What the helper should make of one piece.
fn model_piece(
    base: &[u8],
    zstd: bool,
    bytes: &[u8],
    out: &mut Vec<u8>,
    size: u64,
) -> Result<(), String> {
    let piece = if zstd {
        zstd::bulk::decompress(bytes, DELTA_PIECE_MAX).map_err(|e| e.to_string())?
    } else {
        bytes.to_vec()
    };
    let ops = parse(&piece).map_err(|e| e.to_string())?;
    model::apply(base, &ops, out, size).map_err(|e| format!("{e:?}"))
}
