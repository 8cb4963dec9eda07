//! The four steps of a drill after the recovery: integrity, function, performance and
//! security.

use super::*;

pub(super) fn integrity_step(rec: &RecoveryReport) -> StepReport {
    let mut step = StepReport::new(StepName::Integrity);
    let mut dropped = 0;
    // Paths as in the snapshot, not in scratch space.
    let prefix = rec.target.to_string_lossy().into_owned();
    let in_snapshot = |p: &str| match p.strip_prefix(prefix.as_str()) {
        Some("") => "/".to_string(),
        Some(rest) => rest.to_string(),
        None => p.to_string(),
    };
    for e in &rec.errors {
        step.status = StepStatus::Failed;
        let reason = e.reason.replace(prefix.as_str(), "");
        push_bounded(
            &mut step.reasons,
            &mut dropped,
            format!("{}: {reason}", in_snapshot(&e.path)),
        );
    }
    if dropped > 0 {
        step.reasons.push(format!("... and {dropped} more"));
    }
    if step.status == StepStatus::Passed && rec.files > 0 && rec.verified_files == 0 {
        step.fail(format!(
            "none of the {} restored files was verified",
            rec.files
        ));
    }
    step.notes.push(format!(
        "{} files verified against the snapshot's content hashes",
        rec.verified_files
    ));
    // The restore's verification is timed within the restore.
    step.duration_secs = 0.0;
    step
}

/// The directory checks run in: the restored copy of the snapshot's only path when it
/// has one path that is a directory, else the restore's root.
pub fn data_dir(target: &Path, snapshot: &Snapshot) -> PathBuf {
    if let [only] = snapshot.paths.as_slice() {
        let p = target.join(only.trim_start_matches('/'));
        if p.is_dir() {
            return p;
        }
    }
    target.to_path_buf()
}

pub(super) fn function_step(
    plan: &DrillPlan,
    snapshot: &Snapshot,
    target: &Path,
    progress: &dyn Progress,
) -> (StepReport, Vec<CheckReport>) {
    let t = Instant::now();
    let mut step = StepReport::new(StepName::Function);
    if plan.checks.is_empty() {
        step.status = StepStatus::Skipped;
        step.reasons.push("no check commands declared".into());
        return (step, Vec::new());
    }
    let dir = data_dir(target, snapshot);
    let mut checks = Vec::new();
    for c in &plan.checks {
        let env = [
            ("ARCA_DRILL_DIR", dir.as_os_str()),
            ("ARCA_DRILL_ROOT", target.as_os_str()),
        ];
        let outcome = run_command_until(&c.command, Some(&dir), &env, None, c.timeout, &|| {
            progress.should_stop()
        });
        let passed = outcome.success();
        if !passed {
            step.fail(format!(
                "check {:?} {}",
                c.command,
                outcome.failure_reason()
            ));
        }
        checks.push(CheckReport { passed, outcome });
    }
    step.duration_secs = t.elapsed().as_secs_f64();
    (step, checks)
}

pub(super) fn performance_step(
    plan: &DrillPlan,
    snapshot: &Snapshot,
    rec: &RecoveryReport,
) -> (StepReport, PerformanceFacts) {
    let mut step = StepReport::new(StepName::Performance);
    let restore_secs = rec.restore_secs.max(1e-6);
    let throughput = rec.bytes as f64 / restore_secs;
    let full = plan
        .full_size
        .unwrap_or(snapshot.summary.total_bytes.max(rec.bytes));
    let hooks_secs = (rec.duration_secs - rec.restore_secs).max(0.0);
    let projected = if rec.bytes == 0 {
        rec.duration_secs
    } else {
        full as f64 / throughput + hooks_secs
    };
    let facts = PerformanceFacts {
        recovery_secs: rec.duration_secs,
        restore_secs: rec.restore_secs,
        bytes: rec.bytes,
        throughput_bytes_per_sec: throughput,
        rto_secs: plan.rto.map(|d| d.as_secs_f64()),
        full_size_bytes: full,
        projected_full_restore_secs: projected,
    };
    step.duration_secs = rec.duration_secs;
    step.notes.push(format!(
        "{} tier recovery took {:.3}s ({} bytes at {:.1} MB/s); a full restore of {} bytes is projected at {:.3}s",
        rec.tier.as_str(),
        rec.duration_secs,
        rec.bytes,
        throughput / 1e6,
        full,
        projected
    ));
    match plan.rto {
        None => step.notes.push("no RTO declared: measured only".into()),
        Some(rto) => {
            let rto_s = rto.as_secs_f64();
            if rec.duration_secs > rto_s {
                step.fail(format!(
                    "the recovery took {:.3}s, over the RTO of {}",
                    rec.duration_secs,
                    format_duration(rto)
                ));
            } else if projected > rto_s {
                step.fail(format!(
                    "a full restore of {full} bytes is projected at {projected:.3}s, over the RTO of {}",
                    format_duration(rto)
                ));
            }
        }
    }
    (step, facts)
}

/// Up to `n` restored regular files (path inside the snapshot, node) with at least 16
/// bytes, largest first (spread over the tree).
pub(super) fn sample_files(
    repo: &Repository,
    index: &Index,
    tree: &Id,
    target: &Path,
    n: usize,
) -> Vec<(PathBuf, Node)> {
    let mut found = Vec::new();
    let mut stack = vec![(*tree, target.to_path_buf())];
    while let Some((t, dir)) = stack.pop() {
        if found.len() > 64 * n.max(1) {
            break;
        }
        let Ok(tree) = repo.load_tree(index, &t) else {
            continue;
        };
        for node in tree.nodes {
            if !node.has_safe_name() {
                continue;
            }
            let p = dir.join(OsStr::from_bytes(&node.name));
            match node.kind {
                NodeKind::File if node.size >= 16 && !node.content.is_empty() => {
                    found.push((p, node))
                }
                NodeKind::Dir => {
                    if let Some(s) = node.subtree {
                        stack.push((s, p));
                    }
                }
                _ => {}
            }
        }
    }
    found.sort_by_key(|(_, n)| std::cmp::Reverse(n.size));
    found.truncate(n);
    found
}

#[allow(clippy::too_many_arguments)]
pub(super) fn security_step(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    target: &Path,
    scratch: &Path,
    work_name: &str,
    before: &BTreeMap<Vec<u8>, (u32, u64, i64, i64)>,
    work: &Path,
    samples: usize,
) -> StepReport {
    let t = Instant::now();
    let mut step = StepReport::new(StepName::Security);

    // 1. Ownership and permissions.
    let check_owner = arca_core::fsmeta::running_as_root();
    if !check_owner {
        step.notes.push(
            "owners not compared: not running as root, so the restore cannot set them".into(),
        );
    }
    for d in compare_with_snapshot(repo, index, &snapshot.tree, target, check_owner) {
        step.fail(d);
    }

    // 2. Nothing written outside the target.
    let mut after = listing(scratch);
    after.remove(work_name.as_bytes());
    for (name, facts) in &after {
        match before.get(name) {
            None => step.fail(format!(
                "{}: appeared beside the drill during the restore (written outside the target?)",
                scratch.join(OsStr::from_bytes(name)).display()
            )),
            Some(old) if old != facts => step.fail(format!(
                "{}: changed during the restore (written outside the target?)",
                scratch.join(OsStr::from_bytes(name)).display()
            )),
            _ => {}
        }
    }
    for name in before.keys() {
        if !after.contains_key(name) && name.as_slice() != work_name.as_bytes() {
            step.fail(format!(
                "{}: disappeared during the restore",
                scratch.join(OsStr::from_bytes(name)).display()
            ));
        }
    }
    for name in listing(work).keys() {
        if name.as_slice() != b"target" {
            step.fail(format!(
                "{}: left in the drill's directory beside the target",
                work.join(OsStr::from_bytes(name)).display()
            ));
        }
    }
    let escaping = symlinks_leaving(target);
    if escaping > 0 {
        step.notes.push(format!(
            "{escaping} restored symlinks point outside the restored tree (as in the snapshot; none was followed)"
        ));
    }

    check_encryption_at_rest(repo, index, snapshot, target, samples, &mut step);
    step.duration_secs = t.elapsed().as_secs_f64();
    step
}

/// Encryption at rest: the raw packs of sampled files hold neither the files' first bytes
/// nor low-entropy content.
fn check_encryption_at_rest(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    target: &Path,
    samples: usize,
    step: &mut StepReport,
) {
    let files = sample_files(repo, index, &snapshot.tree, target, samples);
    let mut packs: Vec<Id> = Vec::new();
    for (_, node) in &files {
        if let Some(loc) = node.content.first().and_then(|id| index.get(id))
            && !packs.contains(&loc.pack)
        {
            packs.push(loc.pack);
        }
    }
    if packs.is_empty() {
        step.notes
            .push("no file large enough to spot-check encryption at rest".into());
    }
    let mut checked = 0;
    for pack in packs.iter().take(samples.max(1)) {
        let name = pack_name(pack);
        let raw = match repo.storage().read(&name) {
            Ok(r) => r,
            Err(e) => {
                step.fail(format!("{name}: cannot read the pack raw: {e}"));
                continue;
            }
        };
        checked += 1;
        for (path, node) in &files {
            let Ok(mut f) = fs::File::open(path) else {
                continue;
            };
            let mut head = vec![0u8; node.size.min(64) as usize];
            if f.read_exact(&mut head).is_err() || head.iter().all(|&b| b == head[0]) {
                continue;
            }
            if contains(&raw, &head) {
                step.fail(format!(
                    "{name}: holds the first {} bytes of {} in plaintext",
                    head.len(),
                    path.display()
                ));
            }
        }
        if raw.len() >= ENTROPY_MIN_BYTES {
            let e = entropy(&raw);
            if e < ENTROPY_THRESHOLD {
                step.fail(format!(
                    "{name}: byte entropy {e:.2} bits/byte is below {ENTROPY_THRESHOLD} (not encrypted?)"
                ));
            }
        }
    }
    step.notes.push(format!(
        "{checked} pack files read raw: no plaintext of {} sampled files, entropy above {ENTROPY_THRESHOLD} bits/byte",
        files.len()
    ));
}

/// How many symlinks below `root` point outside it (absolute, or climbing out with `..`).
pub(super) fn symlinks_leaving(root: &Path) -> usize {
    fn walk(dir: &Path, depth: usize, count: &mut usize) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.file_type().is_symlink() {
                if let Ok(t) = fs::read_link(&p) {
                    let mut level = depth as isize;
                    let mut leaves = t.is_absolute();
                    for c in t.components() {
                        match c {
                            std::path::Component::ParentDir => level -= 1,
                            std::path::Component::Normal(_) => level += 1,
                            _ => {}
                        }
                        if level < 0 {
                            leaves = true;
                        }
                    }
                    if leaves {
                        *count += 1;
                    }
                }
            } else if m.is_dir() {
                walk(&p, depth + 1, count);
            }
        }
    }
    let mut count = 0;
    walk(root, 0, &mut count);
    count
}
