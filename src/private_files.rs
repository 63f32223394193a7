//! Files only the platform's own user may read: the data directory, the SQLite database and
//! report files hold telemetry, accounts and secrets. On unix, directories the platform
//! creates are `0700` and its files `0600`, whatever the process umask; elsewhere the
//! defaults apply.

use std::path::Path;

/// Creates `dir` (and its parents) if missing, and makes `dir` itself owner-only.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    restrict(dir, 0o700)
}

/// Creates `path` empty if missing and makes it owner-only. Writers that later truncate and
/// fill it (`File::create`) keep its mode.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?;
    restrict(path, 0o600)
}

/// Makes an existing file owner-only, if it exists.
pub fn restrict_if_exists(path: &Path) -> std::io::Result<()> {
    match restrict(path, 0o600) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn directories_and_files_are_owner_only_even_when_they_existed() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/b");
        private_dir(&dir).expect("dir");
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("f");
        std::fs::write(&file, "x").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        private_file(&file).expect("file");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "x", "kept");
        std::fs::write(&file, "y").expect("rewrite");
        assert_eq!(mode(&file), 0o600, "a rewrite keeps the mode");
        restrict_if_exists(&dir.join("missing")).expect("nothing to do");
    }
}
