//! File changes at the edge: read a path's state, back it up beside itself, replace it atomically, restore it.
//!
//! A write goes to a temp file in the same directory, is fsynced, renamed over the path, and the directory is
//! fsynced, so a crash leaves the old file or the new one, never half of either. The original inode is kept as
//! the backup (a hard link taken before the rename), so mode, owner and every byte survive for the undo.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use super::plan::Content;

/// The state of a path now; a directory, device or non-UTF-8 file is an error (we only edit text).
pub fn read_state(path: &Path) -> Result<Content, String> {
    let shown = path.display();
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Content::Absent),
        Err(e) => Err(format!("cannot inspect {shown}: {e}")),
        Ok(m) if m.file_type().is_symlink() => fs::read_link(path)
            .map(|t| Content::Link(t.display().to_string()))
            .map_err(|e| format!("cannot read link {shown}: {e}")),
        Ok(m) if m.is_file() => {
            let bytes = fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
            String::from_utf8(bytes)
                .map(Content::Text)
                .map_err(|_| format!("{shown} is not UTF-8 text; edit it by hand"))
        }
        Ok(_) => Err(format!("{shown} is not a regular file")),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent directory", path.display())))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A name beside `path` that does not exist yet: `<name><suffix>`, then `<name><suffix>.1` ...
fn free_name(path: &Path, suffix: &str) -> io::Result<PathBuf> {
    let base = format!("{}{suffix}", file_name(path));
    for n in 0..1000 {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        let p = path.with_file_name(name);
        if fs::symlink_metadata(&p).is_err() {
            return Ok(p);
        }
    }
    Err(io::Error::other(format!("no free name for {base}")))
}

/// Writes `bytes` to `path` atomically; `like` gives the mode and owner to keep (else 0644, ours).
pub fn write_atomic(path: &Path, bytes: &[u8], like: Option<&fs::Metadata>) -> io::Result<()> {
    write_mode(path, bytes, like, like.map_or(0o644, |m| m.mode() & 0o7777))
}

/// Writes a file only its owner may read (the journal, which holds file contents), atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_mode(path, bytes, None, 0o600)
}

fn write_mode(path: &Path, bytes: &[u8], like: Option<&fs::Metadata>, mode: u32) -> io::Result<()> {
    let dir = parent(path)?;
    let tmp = free_name(path, &format!(".k8sdoctor-tmp-{}", std::process::id()))?;
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if let Some(m) = like {
            std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn link_atomic(path: &Path, target: &str) -> io::Result<()> {
    let tmp = free_name(path, &format!(".k8sdoctor-tmp-{}", std::process::id()))?;
    std::os::unix::fs::symlink(target, &tmp)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent(path)?)
}

/// Creates the missing directories above `path`, returning those it made (outermost first).
fn make_parents(path: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut d = parent(path)?;
    while fs::symlink_metadata(d).is_err() {
        missing.push(d.to_path_buf());
        d = parent(d)?;
    }
    missing.reverse();
    for d in &missing {
        fs::create_dir(d)?;
        sync_dir(parent(d)?)?;
    }
    Ok(missing)
}

/// What a file change left behind: the backup of the old state and the directories it created.
#[derive(Debug, Default)]
pub struct Changed {
    pub backup: Option<PathBuf>,
    pub created_dirs: Vec<PathBuf>,
}

/// Moves `path` from `old` to `new`, refusing when it is no longer `old` (changed since it was planned).
pub fn change(path: &Path, old: &Content, new: &Content, stamp: &str) -> Result<Changed, String> {
    let shown = path.display();
    let now = read_state(path)?;
    if now != *old {
        return Err(format!(
            "{shown} changed since it was planned; run the fix again"
        ));
    }
    let io = |what: &str, e: io::Error| format!("cannot {what} {shown}: {e}");
    let created_dirs = make_parents(path).map_err(|e| io("create the directory of", e))?;
    let mut out = Changed {
        backup: None,
        created_dirs,
    };
    let meta = fs::symlink_metadata(path).ok();
    if *old != Content::Absent {
        let backup =
            free_name(path, &format!(".k8sdoctor-{stamp}.bak")).map_err(|e| io("back up", e))?;
        if fs::hard_link(path, &backup).is_err() {
            // No hard links on this filesystem: copy, keeping mode and owner.
            match old {
                Content::Text(t) => write_atomic(&backup, t.as_bytes(), meta.as_ref()),
                Content::Link(t) => link_atomic(&backup, t),
                Content::Absent => Ok(()),
            }
            .map_err(|e| io("back up", e))?;
        }
        sync_dir(parent(path).map_err(|e| io("back up", e))?).map_err(|e| io("back up", e))?;
        out.backup = Some(backup);
    }
    let written = match new {
        Content::Text(t) => write_atomic(path, t.as_bytes(), meta.as_ref().filter(|m| m.is_file())),
        Content::Link(t) => link_atomic(path, t),
        Content::Absent => fs::remove_file(path).and_then(|_| sync_dir(parent(path)?)),
    };
    if let Err(e) = written {
        if let Some(b) = &out.backup {
            let _ = fs::remove_file(b);
        }
        remove_dirs(&out.created_dirs);
        return Err(io("write", e));
    }
    Ok(out)
}

/// Puts `path` back: the backup renamed over it, or the file removed when the change created it.
/// Refuses when the path is no longer what the change wrote, so an operator's later edit is never lost.
pub fn restore(path: &Path, backup: Option<&Path>, written: &Content) -> Result<(), String> {
    let shown = path.display();
    let now = read_state(path)?;
    if now != *written {
        return Err(format!(
            "{shown} changed after the fix wrote it; left as it is{}",
            backup
                .map(|b| format!(" (the original is at {})", b.display()))
                .unwrap_or_default()
        ));
    }
    let dir = parent(path).map_err(|e| e.to_string())?;
    match backup {
        Some(b) => fs::rename(b, path)
            .map_err(|e| format!("cannot restore {shown} from {}: {e}", b.display()))?,
        None if now == Content::Absent => {}
        None => fs::remove_file(path).map_err(|e| format!("cannot remove {shown}: {e}"))?,
    }
    sync_dir(dir).map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

/// Removes directories a change created, innermost first, leaving any that are not empty.
pub fn remove_dirs(dirs: &[PathBuf]) {
    let mut v: Vec<&PathBuf> = dirs.iter().collect();
    v.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in v {
        let _ = fs::remove_dir(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn change_keeps_mode_and_owner_backs_up_and_restores() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fstab");
        fs::write(&p, "old\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let c = change(
            &p,
            &Content::Text("old\n".into()),
            &Content::Text("new\n".into()),
            "T",
        )
        .unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new\n");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let b = c.backup.unwrap();
        assert_eq!(b.file_name().unwrap(), "fstab.k8sdoctor-T.bak");
        assert_eq!(fs::read_to_string(&b).unwrap(), "old\n");
        // A second change in the same second gets its own backup name.
        let c2 = change(
            &p,
            &Content::Text("new\n".into()),
            &Content::Text("newer\n".into()),
            "T",
        )
        .unwrap();
        assert_eq!(
            c2.backup.unwrap().file_name().unwrap(),
            "fstab.k8sdoctor-T.bak.1"
        );
        assert!(
            restore(&p, Some(&b), &Content::Text("new\n".into()))
                .unwrap_err()
                .contains("changed after")
        );
    }

    #[test]
    fn a_changed_file_is_not_overwritten_and_creation_is_undone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/k8s.conf");
        let e = change(
            &p,
            &Content::Text("x".into()),
            &Content::Text("y".into()),
            "T",
        )
        .unwrap_err();
        assert!(e.contains("changed since"), "{e}");
        let c = change(
            &p,
            &Content::Absent,
            &Content::Text("br_netfilter\n".into()),
            "T",
        )
        .unwrap();
        assert_eq!(c.created_dirs.len(), 2);
        restore(&p, None, &Content::Text("br_netfilter\n".into())).unwrap();
        remove_dirs(&c.created_dirs);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn links_are_states_too() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dev-sda2.swap");
        symlink("/lib/systemd/system/x.swap", &p).unwrap();
        let old = read_state(&p).unwrap();
        assert_eq!(old, Content::Link("/lib/systemd/system/x.swap".into()));
        let c = change(&p, &old, &Content::Link("/dev/null".into()), "T").unwrap();
        assert_eq!(fs::read_link(&p).unwrap(), Path::new("/dev/null"));
        restore(&p, c.backup.as_deref(), &Content::Link("/dev/null".into())).unwrap();
        assert_eq!(read_state(&p).unwrap(), old);
        fs::write(dir.path().join("bin"), b"\xff\xfe").unwrap();
        assert!(
            read_state(&dir.path().join("bin"))
                .unwrap_err()
                .contains("not UTF-8")
        );
    }
}
