//! Commands whose output is piped into a reader that stops early (`arca ls latest | head -1`,
//! `arca dump ... | head -c 10`): they end quietly, like Unix tools (killed by SIGPIPE, or
//! exit 0), never with a panic message or an error about the broken pipe.

use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use crate::common::*;

/// Runs `arca ARGS` with stdout into a one-page pipe, reads 10 bytes, closes the pipe and
/// waits. The output is larger than the pipe, so the command is still writing when the
/// reader goes away. Returns a description of how it ended when that was not quiet.
fn ends_quietly(env: &Env, args: &[&str]) -> Result<(), String> {
    let mut c = env.cmd();
    c.env("ARCA_INSECURE_TEST_KDF", "1")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn arca");
    let mut stdout = child.stdout.take().expect("stdout pipe");
    // The smallest pipe the kernel allows (one page), so little output fills it.
    #[allow(unsafe_code)]
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor this test owns.
    unsafe {
        libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 4096);
    }
    let mut head = [0u8; 10];
    stdout.read_exact(&mut head).expect("read 10 bytes");
    drop(stdout);
    let out = child.wait_with_output().expect("wait for arca");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let quiet_end = out.status.code() == Some(0) || out.status.signal() == Some(libc::SIGPIPE);
    if quiet_end && !stderr.contains("panicked") && !stderr.contains("Broken pipe") {
        Ok(())
    } else {
        Err(format!(
            "arca {}: {} with stderr:\n{stderr}",
            args.join(" "),
            out.status
        ))
    }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let env = Env::init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // 300 files with long names (ls: ~25 KB), a 1 MB file (dump).
    for i in 0..300 {
        let name = format!("a-file-with-a-rather-long-name-to-fill-the-listing-{i:04}");
        std::fs::write(src.join(name), format!("{i}\n")).unwrap();
    }
    write_random(&src.join("big.bin"), 7, 1 << 20);
    // 40 snapshots with a long tag (snapshots: ~7 KB).
    let tag = "t".repeat(100);
    for _ in 0..40 {
        env.run_os(&[
            "backup".as_ref(),
            "-q".as_ref(),
            "--tag".as_ref(),
            tag.as_ref(),
            src.as_os_str(),
        ])
        .ok();
    }
    let src_s = src.to_string_lossy().into_owned();
    let big = format!("{src_s}/big.bin");
    let tree = format!("latest:{src_s}");
    let mut failures = Vec::new();
    for args in [
        vec!["ls", "latest"],
        vec!["ls", "latest", "--json"],
        vec!["snapshots"],
        vec!["snapshots", "--json"],
        vec!["dump", "latest", &big],
        vec!["dump", "latest", &src_s],
        vec!["cat", "tree", &tree],
    ] {
        if let Err(e) = ends_quietly(&env, &args) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
