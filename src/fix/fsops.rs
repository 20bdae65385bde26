//! File changes at the edge: read a path's state, back it up beside itself, replace it atomically, restore it.
//!
//! Every path is a host path (`/etc/fstab`) resolved inside the open root through `pathrs` (chroot-like:
//! absolute links resolve against the root, `..` stops at it), so no write, rename, backup or directory
//! creation can land outside the root. A write goes to a temp file in the same directory, is fsynced, renamed
//! over the path, and the directory is fsynced, so a crash leaves the old file or the new one, never half of
//! either. The original inode is kept as the backup (a hard link taken before the rename), so mode, owner and
//! every byte survive for the undo.

use std::{
    fs::{File, Permissions},
    io::{self, Read, Write},
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
};

use pathrs::{
    InodeType, Root,
    flags::{OpenFlags, RenameFlags},
};
use rustix::fs::FileType;

use super::plan::Content;
use crate::core::host::{MAX_FILE, io_error};

/// Mode and owner of a file, kept when it is replaced.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Refuses a host path that is not absolute or that has `.`/`..` in it: such a path (built from host data)
/// means something other than what it says, and would climb out of its directory.
pub fn plain(path: &Path) -> Result<(), String> {
    let ok = path.is_absolute()
        && path
            .components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a plain absolute path inside the root (it has `.` or `..`); refused",
            path.display()
        ))
    }
}

fn stat(tree: &Root, path: &Path) -> io::Result<Option<(FileType, Owner)>> {
    match tree.resolve_nofollow(path).map_err(io_error) {
        Ok(h) => {
            let st = rustix::fs::fstat(&h)?;
            Ok(Some((
                FileType::from_raw_mode(st.st_mode),
                Owner {
                    mode: st.st_mode & 0o7777,
                    uid: st.st_uid,
                    gid: st.st_gid,
                },
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The state of a path now; a directory, device or non-UTF-8 file is an error (we only edit text).
pub fn read_state(tree: &Root, path: &Path) -> Result<Content, String> {
    let shown = path.display();
    match stat(tree, path) {
        Err(e) => Err(format!("cannot inspect {shown}: {e}")),
        Ok(None) => Ok(Content::Absent),
        Ok(Some((FileType::Symlink, _))) => tree
            .readlink(path)
            .map(|t| Content::Link(t.display().to_string()))
            .map_err(|e| format!("cannot read link {shown}: {}", io_error(e))),
        Ok(Some((FileType::RegularFile, _))) => {
            let mut bytes = Vec::new();
            tree.open_subpath(
                path,
                OpenFlags::O_RDONLY | OpenFlags::O_NONBLOCK | OpenFlags::O_NOFOLLOW,
            )
            .map_err(io_error)
            .and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
            if bytes.len() as u64 > MAX_FILE {
                return Err(format!(
                    "{shown} is larger than {} MiB; edit it by hand",
                    MAX_FILE >> 20
                ));
            }
            String::from_utf8(bytes)
                .map(Content::Text)
                .map_err(|_| format!("{shown} is not UTF-8 text; edit it by hand"))
        }
        Ok(Some(_)) => Err(format!("{shown} is not a regular file")),
    }
}

/// Mode and owner of the file at `path` (not following a final link), when it is a regular file.
pub fn owner(tree: &Root, path: &Path) -> Option<Owner> {
    match stat(tree, path) {
        Ok(Some((FileType::RegularFile, o))) => Some(o),
        _ => None,
    }
}

/// Opens a directory inside the root for fsync (or for checking that it is one).
fn open_dir(tree: &Root, dir: &Path) -> io::Result<File> {
    tree.open_subpath(dir, OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY)
        .map_err(io_error)
}

fn sync_dir(tree: &Root, dir: &Path) -> io::Result<()> {
    open_dir(tree, dir)?.sync_all()
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
fn free_name(tree: &Root, path: &Path, suffix: &str) -> io::Result<PathBuf> {
    let base = format!("{}{suffix}", file_name(path));
    for n in 0..1000 {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        let p = path.with_file_name(name);
        if stat(tree, &p)?.is_none() {
            return Ok(p);
        }
    }
    Err(io::Error::other(format!("no free name for {base}")))
}

fn tmp_name(tree: &Root, path: &Path) -> io::Result<PathBuf> {
    free_name(
        tree,
        path,
        &format!(".k8sdoctor-tmp-{}", std::process::id()),
    )
}

/// Writes `bytes` to `path` atomically; `like` gives the mode and owner to keep (else 0644, ours).
pub fn write_atomic(tree: &Root, path: &Path, bytes: &[u8], like: Option<Owner>) -> io::Result<()> {
    write_mode(tree, path, bytes, like, like.map_or(0o644, |m| m.mode))
}

/// Writes a file only its owner may read (the journal, which holds file contents), atomically.
pub fn write_private(tree: &Root, path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_mode(tree, path, bytes, None, 0o600)
}

fn write_mode(
    tree: &Root,
    path: &Path,
    bytes: &[u8],
    like: Option<Owner>,
    mode: u32,
) -> io::Result<()> {
    let dir = parent(path)?;
    let tmp = tmp_name(tree, path)?;
    let mut f = tree
        .create_file(
            &tmp,
            OpenFlags::O_WRONLY | OpenFlags::O_EXCL | OpenFlags::O_NOFOLLOW,
            &Permissions::from_mode(mode),
        )
        .map_err(io_error)?;
    let result = (|| {
        f.write_all(bytes)?;
        if let Some(m) = like {
            std::os::unix::fs::fchown(&f, Some(m.uid), Some(m.gid))?;
        }
        f.set_permissions(Permissions::from_mode(mode))?;
        f.sync_all()?;
        tree.rename(&tmp, path, RenameFlags::empty())
            .map_err(io_error)?;
        sync_dir(tree, dir)
    })();
    if result.is_err() {
        let _ = tree.remove_file(&tmp);
    }
    result
}

fn link_atomic(tree: &Root, path: &Path, target: &str) -> io::Result<()> {
    let tmp = tmp_name(tree, path)?;
    tree.create(&tmp, &InodeType::Symlink(target.into()))
        .map_err(io_error)?;
    if let Err(e) = tree.rename(&tmp, path, RenameFlags::empty()) {
        let _ = tree.remove_file(&tmp);
        return Err(io_error(e));
    }
    sync_dir(tree, parent(path)?)
}

/// The directories above `path` that do not exist yet (outermost first); an existing one that is not a
/// directory (or cannot be resolved inside the root) is an error, found before anything is changed.
pub fn missing_parents(tree: &Root, path: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut d = parent(path)?;
    loop {
        match open_dir(tree, d) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound && stat(tree, d)?.is_some() => {
                return Err(io::Error::other(format!(
                    "{} is a link to a directory that does not exist inside the root",
                    d.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(d.to_path_buf());
                d = parent(d)?;
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{} does not resolve to a directory inside the root: {e}",
                        d.display()
                    ),
                ));
            }
        }
    }
    missing.reverse();
    Ok(missing)
}

/// Creates the missing directories above `path`, returning those it made (outermost first).
pub fn make_parents(tree: &Root, path: &Path) -> io::Result<Vec<PathBuf>> {
    let missing = missing_parents(tree, path)?;
    for (i, d) in missing.iter().enumerate() {
        if let Err(e) = tree
            .create(d, &InodeType::Directory(Permissions::from_mode(0o755)))
            .map_err(io_error)
            .and_then(|_| sync_dir(tree, parent(d)?))
        {
            remove_dirs(tree, &missing[..i]);
            return Err(e);
        }
    }
    Ok(missing)
}

/// What a file change left behind: the backup of the old state and the directories it created.
#[derive(Debug, Default)]
pub struct Changed {
    pub backup: Option<PathBuf>,
    pub created_dirs: Vec<PathBuf>,
}

/// Checks, before anything changes, that `path` can be changed from `old`: a plain path, still `old`, and
/// every existing directory above it a directory inside the root.
pub fn can_change(tree: &Root, path: &Path, old: &Content) -> Result<(), String> {
    plain(path)?;
    let shown = path.display();
    let now = read_state(tree, path)?;
    if now != *old {
        return Err(format!(
            "{shown} changed since it was planned; run the fix again"
        ));
    }
    missing_parents(tree, path).map_err(|e| format!("cannot change {shown}: {e}"))?;
    Ok(())
}

/// Moves `path` from `old` to `new`, refusing when it is no longer `old` (changed since it was planned).
pub fn change(
    tree: &Root,
    path: &Path,
    old: &Content,
    new: &Content,
    stamp: &str,
) -> Result<Changed, String> {
    can_change(tree, path, old)?;
    let shown = path.display();
    let io = |what: &str, e: io::Error| format!("cannot {what} {shown}: {e}");
    let created_dirs = make_parents(tree, path).map_err(|e| io("create the directory of", e))?;
    let mut out = Changed {
        backup: None,
        created_dirs,
    };
    let meta = owner(tree, path);
    if *old != Content::Absent {
        let backup = free_name(tree, path, &format!(".k8sdoctor-{stamp}.bak"))
            .map_err(|e| io("back up", e))?;
        if tree
            .create(&backup, &InodeType::Hardlink(path.to_path_buf()))
            .is_err()
        {
            // No hard links on this filesystem: copy, keeping mode and owner.
            match old {
                Content::Text(t) => write_atomic(tree, &backup, t.as_bytes(), meta),
                Content::Link(t) => link_atomic(tree, &backup, t),
                Content::Absent => Ok(()),
            }
            .map_err(|e| io("back up", e))?;
        }
        sync_dir(tree, parent(path).map_err(|e| io("back up", e))?)
            .map_err(|e| io("back up", e))?;
        out.backup = Some(backup);
    }
    let written = match new {
        Content::Text(t) => write_atomic(tree, path, t.as_bytes(), meta),
        Content::Link(t) => link_atomic(tree, path, t),
        Content::Absent => tree
            .remove_file(path)
            .map_err(io_error)
            .and_then(|_| sync_dir(tree, parent(path)?)),
    };
    if let Err(e) = written {
        if let Some(b) = &out.backup {
            let _ = tree.remove_file(b);
        }
        remove_dirs(tree, &out.created_dirs);
        return Err(io("write", e));
    }
    Ok(out)
}

/// Puts `path` back: the backup renamed over it, or the file removed when the change created it.
/// Refuses when the path is no longer what the change wrote, so an operator's later edit is never lost.
pub fn restore(
    tree: &Root,
    path: &Path,
    backup: Option<&Path>,
    written: &Content,
) -> Result<(), String> {
    plain(path)?;
    let shown = path.display();
    let now = read_state(tree, path)?;
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
        Some(b) => {
            plain(b)?;
            tree.rename(b, path, RenameFlags::empty()).map_err(|e| {
                format!(
                    "cannot restore {shown} from {}: {}",
                    b.display(),
                    io_error(e)
                )
            })?
        }
        None if now == Content::Absent => {}
        None => tree
            .remove_file(path)
            .map_err(|e| format!("cannot remove {shown}: {}", io_error(e)))?,
    }
    sync_dir(tree, dir).map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

/// Removes directories a change created, innermost first, leaving any that are not empty.
pub fn remove_dirs(tree: &Root, dirs: &[PathBuf]) {
    let mut v: Vec<&PathBuf> = dirs.iter().filter(|d| plain(d).is_ok()).collect();
    v.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in v {
        let _ = tree.remove_dir(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        fs,
        os::unix::fs::{MetadataExt, symlink},
    };

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let r = Root::open(dir.path()).unwrap();
        (dir, r)
    }

    #[test]
    fn change_keeps_mode_and_owner_backs_up_and_restores() {
        let (dir, t) = root();
        let p = dir.path().join("fstab");
        fs::write(&p, "old\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let hp = Path::new("/fstab");
        let c = change(
            &t,
            hp,
            &Content::Text("old\n".into()),
            &Content::Text("new\n".into()),
            "T",
        )
        .unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new\n");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let b = c.backup.unwrap();
        assert_eq!(b, Path::new("/fstab.k8sdoctor-T.bak"));
        assert_eq!(
            fs::read_to_string(dir.path().join("fstab.k8sdoctor-T.bak")).unwrap(),
            "old\n"
        );
        // A second change in the same second gets its own backup name.
        let c2 = change(
            &t,
            hp,
            &Content::Text("new\n".into()),
            &Content::Text("newer\n".into()),
            "T",
        )
        .unwrap();
        assert_eq!(c2.backup.unwrap(), Path::new("/fstab.k8sdoctor-T.bak.1"));
        assert!(
            restore(&t, hp, Some(&b), &Content::Text("new\n".into()))
                .unwrap_err()
                .contains("changed after")
        );
    }

    #[test]
    fn a_changed_file_is_not_overwritten_and_creation_is_undone() {
        let (dir, t) = root();
        let p = Path::new("/a/b/k8s.conf");
        let e = change(
            &t,
            p,
            &Content::Text("x".into()),
            &Content::Text("y".into()),
            "T",
        )
        .unwrap_err();
        assert!(e.contains("changed since"), "{e}");
        let c = change(
            &t,
            p,
            &Content::Absent,
            &Content::Text("br_netfilter\n".into()),
            "T",
        )
        .unwrap();
        assert_eq!(c.created_dirs, vec![PathBuf::from("/a"), "/a/b".into()]);
        restore(&t, p, None, &Content::Text("br_netfilter\n".into())).unwrap();
        remove_dirs(&t, &c.created_dirs);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn links_are_states_too() {
        let (dir, t) = root();
        let p = Path::new("/dev-sda2.swap");
        symlink(
            "/lib/systemd/system/x.swap",
            dir.path().join("dev-sda2.swap"),
        )
        .unwrap();
        let old = read_state(&t, p).unwrap();
        assert_eq!(old, Content::Link("/lib/systemd/system/x.swap".into()));
        let c = change(&t, p, &old, &Content::Link("/dev/null".into()), "T").unwrap();
        assert_eq!(
            fs::read_link(dir.path().join("dev-sda2.swap")).unwrap(),
            Path::new("/dev/null")
        );
        restore(
            &t,
            p,
            c.backup.as_deref(),
            &Content::Link("/dev/null".into()),
        )
        .unwrap();
        assert_eq!(read_state(&t, p).unwrap(), old);
        fs::write(dir.path().join("bin"), b"\xff\xfe").unwrap();
        assert!(
            read_state(&t, Path::new("/bin"))
                .unwrap_err()
                .contains("not UTF-8")
        );
    }

    #[test]
    fn writes_through_escaping_directory_links_land_inside_the_root() {
        let top = tempfile::tempdir().unwrap();
        let (inside, outside) = (top.path().join("root"), top.path().join("outside"));
        fs::create_dir_all(inside.join("srv/sysctl.d")).unwrap();
        fs::create_dir_all(inside.join("etc")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        // The inside copies of what the links name.
        fs::create_dir_all(inside.join("outside")).unwrap();
        fs::create_dir_all(inside.join(outside.strip_prefix("/").unwrap())).unwrap();
        // Followed naively, each of these leaves the root for `outside`.
        symlink("../../outside", inside.join("etc/rel")).unwrap();
        symlink(&outside, inside.join("etc/abs")).unwrap();
        let t = Root::open(&inside).unwrap();
        for p in ["/etc/rel/k.conf", "/etc/abs/k.conf"] {
            change(
                &t,
                Path::new(p),
                &Content::Absent,
                &Content::Text("x\n".into()),
                "T",
            )
            .unwrap();
        }
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        // `../../outside` stops at the root: /outside inside it; the absolute link is the root's own path.
        assert_eq!(
            fs::read_to_string(inside.join("outside/k.conf")).unwrap(),
            "x\n"
        );
        assert!(
            inside
                .join(outside.strip_prefix("/").unwrap())
                .join("k.conf")
                .exists()
        );
        // A lexical `..` is refused before anything is read.
        let e = change(
            &t,
            Path::new("/etc/../../x"),
            &Content::Absent,
            &Content::Text("x".into()),
            "T",
        )
        .unwrap_err();
        assert!(e.contains("refused"), "{e}");
        // A looping link as a parent directory: an error naming it, nothing created.
        symlink("/etc/loop", inside.join("etc/loop")).unwrap();
        let e = change(
            &t,
            Path::new("/etc/loop/k.conf"),
            &Content::Absent,
            &Content::Text("x".into()),
            "T",
        )
        .unwrap_err();
        assert!(e.contains("/etc/loop"), "{e}");
    }
}
