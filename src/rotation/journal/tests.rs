use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use super::*;
use crate::jose::Alg;

/// A plan of a rotation of `ns-prod` (for the tests of other steps too).
pub(in crate::rotation) fn plan() -> Plan {
    let old: crate::pkcs11::Pkcs11Uri =
        "pkcs11:token=acc;object=ns-prod;type=private?module-path=/m.so&pin-source=file:/run/pin"
            .parse()
            .unwrap();
    Plan {
        new_key: super::super::plan::new_key_uri(&old, "ns-prod-20260215", "0a0b0c0d"),
        old_key: old,
        old_key_id: "01".into(),
        old_label: Some("ns-prod".into()),
        old_alg: None,
        old_certificate_id: "x1MST4MIlpfQnkY3cIPbW05n7jcJQX0rXv8WvN5Ngd8"
            .parse()
            .unwrap(),
        new_label: "ns-prod-20260215".into(),
        new_key_id: "0a0b0c0d".into(),
        alg: Alg::ES256,
        rsa_bits: None,
        days: 730,
        subject: "CN=ns-prod".into(),
        role: "3".parse().unwrap(),
        entity: "-5".parse().unwrap(),
        new_certificate_id: None,
        delete_old_key: false,
    }
}

fn journal(profile: &str) -> Journal {
    Journal::new(
        profile,
        Path::new("/home/u/config.toml"),
        plan(),
        SystemTime::now(),
    )
}

#[test]
fn a_journal_is_written_0600_in_a_0700_directory_and_read_back() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("state/suitekey/rotate");
    let store = JournalStore::open(Some(&dir)).unwrap();
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
    assert!(store.load("prod").unwrap().is_none());
    let mut written = journal("prod");
    assert!(written.is_done(Step::Preflight));
    assert_eq!(written.next_step(), Some(Step::NewKey));
    store.save(&written).unwrap();
    let path = store.path("prod");
    assert_eq!(path, dir.join("prod.json"));
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
    let read = store.load("prod").unwrap().unwrap();
    assert_eq!(read.plan.new_label, "ns-prod-20260215");
    assert_eq!(read.plan.role.to_string(), "3");
    assert_eq!(
        read.plan.new_key.to_string(),
        written.plan.new_key.to_string()
    );
    // Steps recorded in order, a failure until a step gets past it; complete after step 7.
    written.failed(Step::NewKey, "the token is full".into(), SystemTime::now());
    store.save(&written).unwrap();
    assert_eq!(
        store
            .load("prod")
            .unwrap()
            .unwrap()
            .last_error
            .unwrap()
            .step,
        2
    );
    for step in Step::ALL {
        written.finish(step, SystemTime::now());
    }
    assert!(written.complete && written.last_error.is_none());
    assert!(written.finished_at(Step::Revoke).is_some());
    // Only the journal is left: no temporary file.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["prod.json"]);
    // No secret in it: the key URIs carry the PIN's file, never a PIN.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("pin-source=file:/run/pin") && !text.contains("pin-value"));
}

#[test]
fn a_wider_directory_is_made_0700_and_a_symlinked_one_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    JournalStore::open(Some(&open)).unwrap();
    assert_eq!(std::fs::metadata(&open).unwrap().mode() & 0o7777, 0o700);
    let elsewhere = base.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = base.path().join("link");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let err = JournalStore::open(Some(&link)).err().unwrap();
    assert!(matches!(err, JournalError::Symlink(_)), "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    // A directory others may write to, above the journal's: refused, nothing made.
    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = JournalStore::open(Some(&shared.join("suitekey/rotate")))
        .err()
        .unwrap();
    assert!(matches!(err, JournalError::Unsafe { .. }), "{err}");
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn a_symlink_in_place_of_the_journal_is_never_followed() {
    let base = tempfile::tempdir().unwrap();
    let store = JournalStore::open(Some(&base.path().join("rotate"))).unwrap();
    let target = base.path().join("target.json");
    std::fs::write(&target, serde_json::to_vec(&journal("prod")).unwrap()).unwrap();
    std::os::unix::fs::symlink(&target, store.path("prod")).unwrap();
    let err = store.load("prod").unwrap_err();
    assert!(matches!(err, JournalError::NotAFile { .. }), "{err}");
    let lock = base.path().join("rotate").join("prod.lock");
    std::os::unix::fs::symlink(base.path().join("lock-target"), &lock).unwrap();
    assert!(store.lock("prod").is_err());
    assert!(!base.path().join("lock-target").exists());
}

#[test]
fn one_rotation_per_profile_at_a_time() {
    let base = tempfile::tempdir().unwrap();
    let store = JournalStore::open(Some(base.path())).unwrap();
    let held = store.lock("prod").unwrap();
    let err = store.lock("prod").err().unwrap();
    assert!(matches!(err, JournalError::Busy { .. }), "{err}");
    assert!(err.to_string().contains("profile 'prod'"), "{err}");
    let _other = store.lock("dev").unwrap();
    drop(held);
    let _again = store.lock("prod").unwrap();
}

#[test]
fn journals_that_are_not_this_versions_are_refused_by_name() {
    let base = tempfile::tempdir().unwrap();
    let store = JournalStore::open(Some(base.path())).unwrap();
    let path = store.path("prod");
    for (text, want) in [
        ("{", "EOF"),
        ("[]", "expected struct Journal"),
        ("{\"version\":1}", "missing field"),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = store.load("prod").unwrap_err().to_string();
        assert!(
            err.contains(want) && err.contains("prod.json"),
            "{text}: {err}"
        );
    }
    let mut other = journal("prod");
    other.version = 2;
    std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
    assert!(
        store
            .load("prod")
            .unwrap_err()
            .to_string()
            .contains("version 2")
    );
    std::fs::write(&path, serde_json::to_vec(&journal("dev")).unwrap()).unwrap();
    assert!(
        store
            .load("prod")
            .unwrap_err()
            .to_string()
            .contains("'dev'")
    );
    let mut hostile = serde_json::to_value(journal("prod")).unwrap();
    hostile["plan"]["role"] = "admin".into();
    std::fs::write(&path, serde_json::to_vec(&hostile).unwrap()).unwrap();
    assert!(
        store
            .load("prod")
            .unwrap_err()
            .to_string()
            .contains("internal id")
    );
    std::fs::write(&path, vec![b' '; MAX_JOURNAL as usize + 1]).unwrap();
    assert!(
        store
            .load("prod")
            .unwrap_err()
            .to_string()
            .contains("larger than")
    );
}

#[test]
fn profile_names_become_file_names_that_stay_in_the_directory() {
    assert_eq!(file_name("prod", "json"), "prod.json");
    assert_eq!(file_name("a_b-C9", "json"), "a_b-C9.json");
    assert_eq!(file_name("../x", "json"), "%2E%2E%2Fx.json");
    assert_eq!(file_name(".hidden", "lock"), "%2Ehidden.lock");
    assert_eq!(file_name("", "json"), "%.json");
    assert_eq!(file_name("é", "json"), "%C3%A9.json");
}

#[test]
fn reading_a_journal_creates_and_changes_nothing() {
    let base = tempfile::tempdir().unwrap();
    let missing = base.path().join("state/suitekey/rotate");
    assert!(
        JournalStore::open_existing(Some(&missing))
            .unwrap()
            .is_none()
    );
    assert!(!base.path().join("state").exists());
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = JournalStore::open_existing(Some(&open)).unwrap().unwrap();
    assert!(store.load("prod").unwrap().is_none());
    assert_eq!(std::fs::metadata(&open).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
}
