//! The invariants of a restore plan that confinement rests on, checked as a whole.
//!
//! The executor goes through [`crate::confined::Confined`], which refuses any path that
//! leaves the target; these checks say more: the plan itself only ever names plain,
//! distinct paths in tree order. The fuzz target `restore_plan` and the property test
//! beside the planner check every plan they build with [`Plan::check`].

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::plan::Plan;
use crate::error::{Error, Result};

fn broken(what: String) -> Error {
    Error::Invalid(format!("restore plan invariant broken: {what}"))
}

impl Plan {
    /// Checks that every planned path is a chain of plain components (no `..`, no root,
    /// no NUL, not empty), sits directly in its planned parent, which comes before it,
    /// and is planned once; that hard links point at an earlier file that is not itself
    /// a link; and that the complete-directory lists name planned directories, sorted
    /// and without repeats.
    pub fn check(&self) -> Result<()> {
        let mut seen: HashSet<&Path> = HashSet::new();
        for (i, d) in self.dirs.iter().enumerate() {
            if d.parent.is_some_and(|p| p >= i) {
                return Err(broken(format!("directory {i} comes before its parent")));
            }
            self.check_entry(&d.rel, d.parent, &mut seen)?;
        }
        for (i, f) in self.files.iter().enumerate() {
            self.check_entry(&f.rel, f.parent, &mut seen)?;
            if let Some(j) = f.link_to
                && (j >= i || self.files[j].link_to.is_some())
            {
                return Err(broken(format!("file {i} links to {j}")));
            }
        }
        for o in &self.others {
            self.check_entry(&o.rel, o.parent, &mut seen)?;
        }
        for (dir, names) in &self.complete_dirs {
            if dir.is_some_and(|d| d >= self.dirs.len()) {
                return Err(broken(format!("complete directory {dir:?} is not planned")));
            }
            if !names.windows(2).all(|w| w[0] < w[1]) {
                return Err(broken(format!("names of {dir:?} unsorted or repeated")));
            }
        }
        Ok(())
    }

    fn check_entry<'p>(
        &self,
        rel: &'p Path,
        parent: Option<usize>,
        seen: &mut HashSet<&'p Path>,
    ) -> Result<()> {
        // Byte by byte: `Path::components` would quietly drop a `.` or a doubled `/`.
        let plain = rel
            .as_os_str()
            .as_bytes()
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b".." && !c.contains(&0));
        if !plain {
            return Err(broken(format!("{rel:?} is not a plain relative path")));
        }
        if parent.is_some_and(|p| p >= self.dirs.len()) {
            return Err(broken(format!("{rel:?} has an unplanned parent")));
        }
        let parent_rel = self.dir_rel(parent);
        if rel.parent() != Some(parent_rel) || rel.file_name().is_none() {
            return Err(broken(format!("{rel:?} is not directly in {parent_rel:?}")));
        }
        if !seen.insert(rel) {
            return Err(broken(format!("{rel:?} is planned twice")));
        }
        Ok(())
    }
}
