//! The forget operation: which snapshots a retention policy keeps, group by group, and the
//! removal of the others (or of snapshots named by id). `arca forget` and a job's
//! retention are this one function; the job's selection is "the snapshots with its tag",
//! in one group.
//!
//! Lock: exclusive (not taken for a dry run, which changes nothing).

use std::collections::BTreeMap;

use arca_core::Id;
use arca_core::format::Snapshot;
use arca_core::retention::{Candidate, Decision, RetentionPolicy, apply_policy};
use serde::Serialize;

use crate::prune::{MaintenanceError, ensure_may_delete};
use crate::session::Session;

/// Which snapshots count: all of the filter's conditions hold (an empty list holds always).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    pub hosts: Vec<String>,
    /// Each entry is a comma-separated set of tags that must all be present; any entry may
    /// match.
    pub tags: Vec<String>,
    /// Paths that the snapshot must all have backed up.
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.host))
            && (self.tags.is_empty()
                || self.tags.iter().any(|t| {
                    t.split(',')
                        .filter(|x| !x.is_empty())
                        .all(|x| s.tags.iter().any(|st| st == x))
                }))
            && (self.paths.is_empty()
                || self.paths.iter().all(|p| s.paths.iter().any(|sp| sp == p)))
    }
}

/// What snapshots are grouped by before the policy is applied to each group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupField {
    Host,
    Paths,
    Tags,
}

/// Parses `host,paths,tags` (any subset, in any order; empty for one group).
pub fn parse_group_by(s: &str) -> Result<Vec<GroupField>, MaintenanceError> {
    s.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| match f {
            "host" => Ok(GroupField::Host),
            "paths" => Ok(GroupField::Paths),
            "tags" => Ok(GroupField::Tags),
            other => Err(MaintenanceError::GroupBy(other.to_string())),
        })
        .collect()
}

fn group_key(s: &Snapshot, by: &[GroupField]) -> String {
    let parts: Vec<String> = by
        .iter()
        .map(|f| match f {
            GroupField::Host => format!("host [{}]", s.host),
            GroupField::Paths => format!("paths [{}]", s.paths.join(", ")),
            GroupField::Tags => {
                let mut t = s.tags.clone();
                t.sort();
                format!("tags [{}]", t.join(", "))
            }
        })
        .collect();
    parts.join(", ")
}

/// Which snapshots a forget removes.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Those that `policy` does not keep, among the snapshots that `filter` selects,
    /// grouped by `group_by`.
    Policy {
        policy: Box<RetentionPolicy>,
        filter: SnapshotFilter,
        group_by: Vec<GroupField>,
    },
    /// These snapshots (resolved by the front end).
    Ids(Vec<Id>),
}

/// The decisions of one group.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetGroup {
    /// `host [h], paths [...]`; empty when there is one group.
    pub group: String,
    pub decisions: Vec<Decision>,
}

/// What a forget decided and removed.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    pub dry_run: bool,
    pub groups: Vec<ForgetGroup>,
    /// The snapshots removed (or that a dry run would remove).
    pub removed: Vec<Id>,
}

/// Forgets snapshots of the session's repository (see the module documentation). A
/// policy that keeps everything is refused ([`MaintenanceError::EmptyPolicy`]): it would
/// remove every snapshot.
pub fn forget(
    session: &Session,
    selection: &Selection,
    dry_run: bool,
    stop: &dyn Fn() -> bool,
) -> Result<ForgetReport, MaintenanceError> {
    let repo = session.repository();
    ensure_may_delete(repo, "forget")?;
    let _lock = if dry_run {
        None
    } else {
        Some(session.lock(true, "forget", stop)?)
    };
    let (groups, removed) = match selection {
        Selection::Ids(ids) => (Vec::new(), ids.clone()),
        Selection::Policy {
            policy,
            filter,
            group_by,
        } => {
            if policy.is_empty() {
                return Err(MaintenanceError::EmptyPolicy);
            }
            let (snaps, _unreadable) = repo.list_snapshots()?;
            decide(&snaps, policy, filter, group_by)
        }
    };
    if !dry_run {
        for id in &removed {
            repo.storage()
                .delete(&format!("snapshots/{id}"))
                .map_err(|source| MaintenanceError::RemoveSnapshot {
                    id: id.to_string(),
                    source,
                })?;
        }
    }
    Ok(ForgetReport {
        dry_run,
        groups,
        removed,
    })
}

/// The policy's decisions on each group of the selected snapshots, and the ids it removes.
pub fn decide(
    snaps: &[(Id, Snapshot)],
    policy: &RetentionPolicy,
    filter: &SnapshotFilter,
    group_by: &[GroupField],
) -> (Vec<ForgetGroup>, Vec<Id>) {
    let mut grouped: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for (id, s) in snaps.iter().filter(|(_, s)| filter.matches(s)) {
        grouped
            .entry(group_key(s, group_by))
            .or_default()
            .push(Candidate {
                id: *id,
                time: s.time,
                utc_offset_secs: s.utc_offset_secs,
                tags: s.tags.clone(),
            });
    }
    let mut removed = Vec::new();
    let groups = grouped
        .into_iter()
        .map(|(group, candidates)| {
            let decisions = apply_policy(policy, &candidates);
            removed.extend(decisions.iter().filter(|d| !d.keep).map(|d| d.id));
            ForgetGroup { group, decisions }
        })
        .collect();
    (groups, removed)
}
