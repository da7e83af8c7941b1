//! Files htlcgate writes must not be files it keeps: an audit log pointed at the
//! journal would append to it and, at rotation, rename or delete it (verdicts and
//! plugin state gone at the next start); a journal pointed at the config or a
//! plugin would overwrite it.

use std::path::{Component, Path, PathBuf};

use super::Config;

/// The first file htlcgate would write that is also a file it keeps:
/// `Err((config key, message naming both and the way out))`.
pub(super) fn check(c: &Config) -> Result<(), (String, String)> {
    let mut kept: Vec<(String, PathBuf)> = vec![("the config file".into(), c.source.clone())];
    kept.extend(
        c.plugins
            .iter()
            .map(|p| (format!("plugin `{}`'s file", p.name), p.path.clone())),
    );
    let journal = journal_files(&c.journal.path);
    for written in &journal {
        clash("journal.path", written, &kept, "journal")?;
    }
    if let Some(a) = &c.audit {
        kept.extend(
            journal
                .iter()
                .map(|f| ("the journal's file".to_string(), f.clone())),
        );
        let mut audit = vec![a.path.clone()];
        audit.extend((1..=a.keep).map(|n| crate::audit::rotated_path(&a.path, n)));
        for written in &audit {
            clash("audit.path", written, &kept, "audit log")?;
        }
    }
    Ok(())
}

/// The journal's files: the redb file, its write-ahead log and the rotated log.
fn journal_files(path: &Path) -> Vec<PathBuf> {
    let wal = crate::wal::path_for(path);
    let old = crate::wal::old_path(&wal);
    vec![path.to_owned(), wal, old]
}

fn clash(
    key: &str,
    written: &Path,
    kept: &[(String, PathBuf)],
    what: &str,
) -> Result<(), (String, String)> {
    match kept.iter().find(|(_, k)| same(written, k)) {
        None => Ok(()),
        Some((name, k)) => Err((
            key.to_owned(),
            format!(
                "the {what} would write {}, which is {name} ({}); writing it would destroy it. \
                 Choose a {what} path of its own (e.g. beside the config, under another name)",
                written.display(),
                k.display()
            ),
        )),
    }
}

/// The same file: equal once `.` and `..` are folded away, or, where both exist,
/// the same file after following links.
fn same(a: &Path, b: &Path) -> bool {
    if normal(a) == normal(b) {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `path` with `.` dropped and `..` taken against the part before it.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_are_folded_before_comparing() {
        assert!(same(Path::new("/a/./b/../c"), Path::new("/a/c")));
        assert!(!same(Path::new("/a/b"), Path::new("/a/c")));
    }
}
