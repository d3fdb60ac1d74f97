//! Private directories: the ones that hold keys, join tokens and a registry's state.
//!
//! Every directory this creates is mode 0700 whatever the process's umask: `mkdir(2)` applies the
//! umask to the mode asked for, so a umask like 0277 would leave 0500; the mode is set again after
//! creation, which the umask does not touch. Directories that already exist are left as they are
//! by [`create_private_dir`]; [`tighten_private_dir`] makes an existing one 0700 as well, for
//! directories that belong to toolmesh alone (a registry's state directory).

use std::io;
use std::path::{Path, PathBuf};

/// Creates `dir` and every missing parent, each 0700 regardless of the umask. Answers the
/// directories it created (outermost first); an existing `dir` is left alone (empty answer).
pub fn create_private_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor {
        if path.as_os_str().is_empty() || path.is_dir() {
            break;
        }
        missing.push(path.to_owned());
        cursor = path.parent();
    }
    missing.reverse();
    let mut created = Vec::new();
    for path in missing {
        match make_dir(&path) {
            Ok(()) => {
                set_private(&path)?;
                created.push(path);
            }
            // Another process made it in the meantime: it is not ours to change.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// Creates `dir` like [`create_private_dir`], and when it already exists with any permission
/// for its group or others, takes those away (0700). Answers the mode it had when it was
/// tightened. Fails when the mode cannot be changed (the directory belongs to another user):
/// then the directory cannot be kept private and must not be used.
pub fn tighten_private_dir(dir: &Path) -> io::Result<Option<u32>> {
    if !create_private_dir(dir)?.is_empty() {
        return Ok(None);
    }
    let loose = group_or_other_mode(dir)?;
    if loose.is_some() {
        set_private(dir)?;
    }
    Ok(loose)
}

/// The permission bits of `dir` (as `0o755`) when its group or others have any; `None` when
/// it is private (or on a platform without Unix modes).
pub fn group_or_other_mode(dir: &Path) -> io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
        Ok((mode & 0o077 != 0).then_some(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = std::fs::metadata(dir)?;
        Ok(None)
    }
}

fn make_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(path)
    }
    #[cfg(not(unix))]
    {
        std::fs::DirBuilder::new().create(path)
    }
}

fn set_private(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn creates_every_missing_level_private_and_leaves_existing_ones() {
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = base.path().join("a").join("b");
        let created = create_private_dir(&dir).unwrap();
        assert_eq!(created, [base.path().join("a"), dir.clone()]);
        assert_eq!((mode(&base.path().join("a")), mode(&dir)), (0o700, 0o700));
        assert_eq!(mode(base.path()), 0o755, "an existing directory is not ours to change");
        assert!(create_private_dir(&dir).unwrap().is_empty());
    }

    #[test]
    fn tightening_takes_away_group_and_other_permissions() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(tighten_private_dir(&dir).unwrap(), Some(0o777));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(tighten_private_dir(&dir).unwrap(), None);
    }
}
