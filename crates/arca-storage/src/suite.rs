//! The conformance suite every storage backend must pass.
//!
//! Call [`run_all`] on an empty, not yet created storage. The checks panic with a message on
//! the first failure, so they are meant for tests.

use crate::{ErrorKind, Storage};

/// Runs every check in turn on `s` (which must be empty and not yet created).
pub fn run_all(s: &dyn Storage) {
    s.create().expect("create");
    s.create().expect("create is idempotent");
    empty_object(s);
    round_trip_and_ranges(s);
    missing_objects(s);
    overwrite_replaces_whole(s);
    listing(s);
    delete(s);
}

fn empty_object(s: &dyn Storage) {
    s.write("snapshots/empty", b"").expect("write empty");
    assert_eq!(s.read("snapshots/empty").expect("read empty"), b"");
    assert_eq!(s.stat("snapshots/empty").expect("stat").size, 0);
    assert_eq!(
        s.read_range("snapshots/empty", 0, 0).expect("empty range"),
        b""
    );
    s.delete("snapshots/empty").expect("delete empty");
}

fn round_trip_and_ranges(s: &dyn Storage) {
    let data: Vec<u8> = (0..(3 << 20) + 17)
        .map(|i: u32| (i * 31 % 251) as u8)
        .collect();
    s.write("data/ab/large", &data).expect("write large");
    assert_eq!(s.read("data/ab/large").expect("read large"), data);
    assert_eq!(
        s.stat("data/ab/large").expect("stat").size,
        data.len() as u64
    );
    let r = s
        .read_range("data/ab/large", 1_000_000, 4096)
        .expect("range");
    assert_eq!(r, &data[1_000_000..1_004_096]);
    let tail = s
        .read_range("data/ab/large", data.len() as u64 - 5, 5)
        .expect("tail range");
    assert_eq!(tail, &data[data.len() - 5..]);
    assert!(
        s.read_range("data/ab/large", data.len() as u64 - 5, 6)
            .is_err(),
        "range past end must fail"
    );
    // Into a reused buffer: its old content (longer or shorter) is replaced.
    let mut buf = vec![0xEE; 10_000];
    s.read_range_into("data/ab/large", 17, 100, &mut buf)
        .expect("range into");
    assert_eq!(buf, &data[17..117]);
    s.read_range_into("data/ab/large", 2 << 20, 1 << 20, &mut buf)
        .expect("range into, growing");
    assert_eq!(buf, &data[2 << 20..3 << 20]);
    s.delete("data/ab/large").expect("delete large");
}

fn missing_objects(s: &dyn Storage) {
    for r in [
        s.read("index/missing").map(|_| ()),
        s.read_range("index/missing", 0, 1).map(|_| ()),
        s.stat("index/missing").map(|_| ()),
        s.delete("index/missing"),
    ] {
        let err = r.expect_err("missing object must fail");
        assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    }
}

fn overwrite_replaces_whole(s: &dyn Storage) {
    s.write("config", b"first version, longer").expect("write");
    s.write("config", b"second").expect("overwrite");
    assert_eq!(s.read("config").expect("read"), b"second");
    s.delete("config").expect("delete");
}

fn listing(s: &dyn Storage) {
    let n = 1500;
    for i in 0..n {
        s.write(&format!("locks/{i:05}"), &[i as u8])
            .expect("write many");
    }
    s.write("keys/k1", b"key").expect("write key");
    let list = s.list("locks/").expect("list");
    assert_eq!(list.len(), n, "listing returns every object");
    assert!(
        list.iter()
            .all(|o| o.name.starts_with("locks/") && o.size == 1)
    );
    let keys = s.list("keys").expect("list without slash");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].name, "keys/k1");
    assert!(s.list("index/").expect("list empty kind").is_empty());
    for i in 0..n {
        s.delete(&format!("locks/{i:05}")).expect("delete many");
    }
    s.delete("keys/k1").expect("delete key");
    assert!(s.list("locks/").expect("list").is_empty());
}

fn delete(s: &dyn Storage) {
    s.write("data/cd/x", b"x").expect("write");
    s.delete("data/cd/x").expect("delete");
    assert_eq!(
        s.read("data/cd/x").expect_err("deleted").kind,
        ErrorKind::NotFound
    );
}
