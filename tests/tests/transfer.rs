//! What travels: renamed and copied files cost no content bytes, text
//! travels compressed, random data raw; every run restores exactly.

#![allow(clippy::unwrap_used)]

use std::fs;

use offsnap_tests::random::Rng;
use offsnap_tests::*;

fn backup_json(s: &Scratch, now: &str) -> serde_json::Value {
    let out = s.offsnap(
        Some(now),
        &[&"backup", &"--set", &"t", &"--json", &s.src(), &s.dest()],
    );
    assert_ok(&out);
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// A run through a helper process (`--remote-cmd`), where changed files
/// travel as deltas; to a plain local path they are sent whole.
fn backup_json_via_helper(s: &Scratch, now: &str) -> serde_json::Value {
    let out = s.offsnap(
        Some(now),
        &[
            &"backup",
            &"--set",
            &"t",
            &"--json",
            &"--remote-cmd",
            &remote_bin(),
            &s.src(),
            &s.dest(),
        ],
    );
    assert_ok(&out);
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn renaming_a_directory_of_1000_files_sends_no_content() {
    let s = Scratch::new();
    let mut rng = Rng::new(1000);
    let bulk = s.src().join("bulk.0");
    fs::create_dir(&bulk).unwrap();
    let mut total = 0;
    for i in 0..1000 {
        let size = 1000 + rng.below(3000) as usize;
        total += size;
        let data = rng.noise(size);
        write_file(
            &bulk.join(format!("f{i:04}")),
            &data,
            0o644,
            (1_700_000_000, i),
        );
    }
    let first = backup_json(&s, &day(0, 0));
    assert_eq!(n(&first, "sent_whole"), 1000);
    assert_eq!(n(&first, "literal_bytes"), total as u64);

    fs::rename(&bulk, s.src().join("bulk.renamed")).unwrap();
    let second = backup_json(&s, &day(1, 0));
    assert_eq!(n(&second, "linked_by_hash"), 1000, "{second}");
    assert_eq!(n(&second, "sent_whole"), 0);
    assert_eq!(n(&second, "literal_bytes"), 0);
    // Only names and metadata travel: far less than the content.
    assert!(
        n(&second, "wire_bytes_sent") < total as u64 / 10,
        "{second}"
    );
    let snap = second["snapshot"].as_str().unwrap();
    assert_same_tree(&s.src(), &s.restore(snap).join("src"));
    // The renamed files share inodes with the first snapshot's.
    let set = s.set_dir();
    let a = set
        .join(first["snapshot"].as_str().unwrap())
        .join("src/bulk.0/f0007");
    let b = set.join(snap).join("src/bulk.renamed/f0007");
    assert_eq!(inode(&a), inode(&b));
}

#[test]
fn copies_and_touched_files_are_stored_from_the_host() {
    let s = Scratch::new();
    let mut rng = Rng::new(5);
    let data = rng.bytes(100_000);
    write_file(&s.src().join("a"), &data, 0o644, (1_700_000_000, 0));
    write_file(&s.src().join("b"), &data, 0o600, (1_700_000_001, 0));
    let first = backup_json(&s, &day(0, 0));
    // `b` is a copy of `a` within the same run.
    assert_eq!(
        (n(&first, "sent_whole"), n(&first, "linked_by_hash")),
        (1, 1)
    );
    // Touching `a` (new mtime, same content) sends no content either, and
    // the new snapshot gets a new inode with the new mtime.
    set_mtime(&s.src().join("a"), (1_800_000_000, 5));
    let second = backup_json(&s, &day(1, 0));
    assert_eq!(n(&second, "linked_by_hash"), 1, "{second}");
    assert_eq!(n(&second, "literal_bytes"), 0);
    let snap = second["snapshot"].as_str().unwrap();
    assert_same_tree(&s.src(), &s.restore(snap).join("src"));
    let first_a = s
        .set_dir()
        .join(first["snapshot"].as_str().unwrap())
        .join("src/a");
    assert_ne!(
        inode(&first_a),
        inode(&s.set_dir().join(snap).join("src/a"))
    );
    let old = fs::symlink_metadata(&first_a).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        old.mtime(),
        1_700_000_000,
        "the old snapshot was not touched"
    );
}

#[test]
fn text_travels_compressed_and_random_data_raw() {
    let s = Scratch::new();
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog\n".repeat(50_000);
    write_file(&s.src().join("text"), &text, 0o644, (1_700_000_000, 0));
    let text_run = backup_json(&s, &day(0, 0));
    assert!(
        n(&text_run, "wire_bytes_sent") < text.len() as u64 / 20,
        "{text_run}"
    );

    let mut rng = Rng::new(9);
    let noise: Vec<u8> = rng.noise(3_000_000);
    write_file(&s.src().join("noise"), &noise, 0o644, (1_700_000_000, 0));
    let noise_run = backup_json(&s, &day(1, 0));
    let sent = n(&noise_run, "wire_bytes_sent");
    assert!(
        sent >= noise.len() as u64 && sent < noise.len() as u64 + 64 * 1024,
        "{noise_run}"
    );
    let snap = noise_run["snapshot"].as_str().unwrap();
    assert_same_tree(&s.src(), &s.restore(snap).join("src"));
}

#[test]
fn a_changed_big_file_travels_as_a_small_delta() {
    let s = Scratch::new();
    let mut rng = Rng::new(21);
    // Several diff windows, with changes at and near their edges.
    let mut data = rng.noise(7 << 20);
    write_file(&s.src().join("big.bin"), &data, 0o644, (1_700_000_000, 0));
    write_file(
        &s.src().join("small.txt"),
        b"small files go whole",
        0o644,
        (1_700_000_000, 0),
    );
    let first = backup_json_via_helper(&s, &day(0, 0));
    assert_eq!(n(&first, "sent_delta"), 0);

    for at in [5_000usize, (2 << 20) - 3, 2 << 20, (4 << 20) + 12_345] {
        let patch = rng.noise(1000);
        data[at..at + 1000].copy_from_slice(&patch);
    }
    data.extend(rng.noise(300_000));
    data.drain(100_000..100_500); // a shift: later blocks still match
    write_file(&s.src().join("big.bin"), &data, 0o644, (1_700_000_100, 0));
    let second = backup_json_via_helper(&s, &day(1, 0));
    assert_eq!(n(&second, "sent_delta"), 1, "{second}");
    let literal = n(&second, "literal_bytes");
    // The edits, the append and a few blocks around each edit.
    assert!(literal > 300_000 && literal < 700_000, "{second}");
    assert_eq!(n(&second, "matched_bytes") + literal, data.len() as u64);
    assert!(n(&second, "wire_bytes_sent") < 800_000, "{second}");
    let snap = second["snapshot"].as_str().unwrap();
    assert_same_tree(&s.src(), &s.restore(snap).join("src"));
    // The old version is untouched in the first snapshot.
    let first_copy = s
        .set_dir()
        .join(first["snapshot"].as_str().unwrap())
        .join("src/big.bin");
    assert_eq!(fs::metadata(&first_copy).unwrap().len(), 7 << 20);

    // To the same destination as a plain local path (the helper in this
    // process) the next change travels whole: no rolling checksum.
    data[3 << 20] ^= 0xff;
    write_file(&s.src().join("big.bin"), &data, 0o644, (1_700_000_200, 0));
    let third = backup_json(&s, &day(2, 0));
    assert_eq!(n(&third, "sent_delta"), 0, "{third}");
    assert_eq!(n(&third, "sent_whole"), 1, "{third}");
    assert_eq!(n(&third, "whole_bytes"), data.len() as u64, "{third}");
    let snap = third["snapshot"].as_str().unwrap();
    assert_same_tree(&s.src(), &s.restore(snap).join("src"));
    let out = s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &s.dest()]);
    assert_ok(&out);
}

#[test]
fn an_unchanged_tree_costs_a_few_bytes() {
    let s = Scratch::new();
    let mut rng = Rng::new(2);
    offsnap_tests::random::make_tree(&mut rng, &s.src(), 2000);
    let first = backup_json(&s, &day(0, 0));
    let files = n(&first, "files_scanned");
    assert!(files > 1000);
    let second = backup_json(&s, &day(1, 0));
    assert_eq!(n(&second, "linked_unchanged"), files);
    // One op for the whole tree, plus the session's requests; and no
    // manifest comes down: the client built the same one and kept it.
    assert!(n(&second, "wire_bytes_sent") < 1024, "{second}");
    assert!(n(&second, "wire_bytes_received") < 1024, "{second}");
    let snap = second["snapshot"].as_str().unwrap();
    assert_same_tree(&s.src(), &s.restore(snap).join("src"));
    // A few changes and removals in between still cost little.
    offsnap_tests::random::mutate(&mut rng, &s.src(), 5);
    let third = backup_json(&s, &day(2, 0));
    let snap = third["snapshot"].as_str().unwrap();
    assert_same_tree(&s.src(), &s.restore(snap).join("src"));
}

#[test]
fn a_damaged_cached_manifest_is_fetched_again() {
    let s = Scratch::new();
    let mut rng = Rng::new(3);
    offsnap_tests::random::make_tree(&mut rng, &s.src(), 300);
    backup_json(&s, &day(0, 0));
    let cached: Vec<_> = fs::read_dir(s.cache())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "the run's own manifest is cached");
    let mut bytes = fs::read(&cached[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&cached[0], bytes).unwrap();
    let second = backup_json(&s, &day(1, 0));
    assert!(
        n(&second, "wire_bytes_received") > 1024,
        "fetched again: {second}"
    );
    let snap = second["snapshot"].as_str().unwrap();
    assert_same_tree(&s.src(), &s.restore(snap).join("src"));
}

#[test]
fn bwlimit_keeps_the_rate() {
    let s = Scratch::new();
    let mut rng = Rng::new(77);
    write_file(
        &s.src().join("noise"),
        &rng.noise(3 << 20),
        0o644,
        (1_700_000_000, 0),
    );
    let t = std::time::Instant::now();
    let out = s.offsnap(
        Some(&day(0, 0)),
        &[
            &"backup",
            &"--set",
            &"t",
            &"--bwlimit",
            &"1M",
            &s.src(),
            &s.dest(),
        ],
    );
    assert_ok(&out);
    let took = t.elapsed().as_secs_f64();
    assert!(took >= 2.5, "3 MiB at 1 MiB/s took {took:.2}s");
    let snap = stdout(&out).trim().to_string();
    assert_same_tree(&s.src(), &s.restore(&snap).join("src"));
}

/// The kept signature of `set`'s only large file, as a path.
fn kept_signature(s: &Scratch) -> std::path::PathBuf {
    let dir = s.dest().join("t/.offsnap/signatures");
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names.remove(0)
}

#[test]
fn a_large_file_s_signature_is_kept_and_a_lying_one_costs_only_a_resend() {
    let s = Scratch::new();
    let mut rng = Rng::new(33);
    let mut data = rng.noise(20 << 20);
    let big = s.src().join("big.bin");
    write_file(&big, &data, 0o644, (1_700_000_000, 0));
    backup_json_via_helper(&s, &day(0, 0));

    // An edit in place and an append: a small delta (the base is signed
    // once and its signature kept), and the rebuilt file is signed on the
    // way, its unchanged blocks' entries taken from the base's.
    data[(10 << 20) + 5] ^= 0x55;
    data.extend(rng.noise(100_000));
    write_file(&big, &data, 0o644, (1_700_000_100, 0));
    let second = backup_json_via_helper(&s, &day(1, 0));
    assert_eq!(n(&second, "sent_delta"), 1, "{second}");
    assert!(n(&second, "literal_bytes") < 400_000, "{second}");
    let snap = second["snapshot"].as_str().unwrap();
    assert_same_tree(&s.src(), &s.restore(snap).join("src"));
    let kept = kept_signature(&s);
    assert!(fs::read(&kept).unwrap()[40..] == offsnap_protocol::diff::sign_bytes(&data)[..]);

    // A kept signature that lies (it describes the file as it will be, so
    // the client finds every block in place and sends only copies): the
    // rebuilt file does not hash as the client's, and it is sent whole.
    let mut next = data.clone();
    next[(3 << 20) + 7] ^= 0x0f;
    let mut lie = fs::read(&kept).unwrap()[..40].to_vec();
    lie.extend(offsnap_protocol::diff::sign_bytes(&next));
    fs::write(&kept, &lie).unwrap();
    write_file(&big, &next, 0o644, (1_700_000_200, 0));
    let third = backup_json_via_helper(&s, &day(2, 0));
    let snap = third["snapshot"].as_str().unwrap();
    assert_same_tree(&s.src(), &s.restore(snap).join("src"));
    assert!(n(&third, "wire_bytes_sent") >= next.len() as u64, "{third}");
    let out = s.offsnap(None, &[&"verify", &"--set", &"t", &"--all", &s.dest()]);
    assert_ok(&out);
}
