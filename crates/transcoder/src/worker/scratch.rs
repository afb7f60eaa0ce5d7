//! A job's scratch directory (source, outputs, intermediate files) under the work dir, locked
//! while its job runs, and the sweeping of directories whose worker died.

use std::path::Path;
use std::time::Duration;

const SCRATCH_PREFIX: &str = "flick-job-";
const SCRATCH_LOCK: &str = ".alive";

/// Removes job directories whose worker died without cleaning up (SIGKILL, OOM): their lock
/// is free. Removing them also ends an orphaned ffmpeg, which fails opening its next segment.
/// Runs when a worker starts (a restarted worker clears what its dead self left) and before
/// every job (a worker that never comes back is cleared up after by the others).
pub(super) fn sweep_stale_scratch(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().starts_with(SCRATCH_PREFIX) || !path.is_dir() {
            continue;
        }
        let stale = match std::fs::File::open(path.join(SCRATCH_LOCK)) {
            Ok(lock) => lock.try_lock().is_ok(),
            // No lock yet: a job that is just starting, unless the directory is old.
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(600))),
        };
        if stale {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::info!(dir = %path.display(), "removed a dead job's scratch directory"),
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove a dead job's scratch directory")
                }
            }
        }
    }
}

/// A new scratch directory for a job under `root`, after sweeping dead jobs' ones; it goes
/// when the returned directory is dropped. The lock file is held while the job runs: the lock
/// dies with the process, however it dies.
pub(super) fn job_dir(root: &Path) -> std::io::Result<(tempfile::TempDir, std::fs::File)> {
    std::fs::create_dir_all(root)?;
    sweep_stale_scratch(root);
    let work = tempfile::Builder::new().prefix(SCRATCH_PREFIX).tempdir_in(root)?;
    let alive = std::fs::File::create(work.path().join(SCRATCH_LOCK))
        .and_then(|f| f.try_lock().map(|()| f).map_err(std::io::Error::other))?;
    Ok((work, alive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scratch_directories_of_dead_jobs_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let dead = root.path().join(format!("{SCRATCH_PREFIX}dead"));
        let alive = root.path().join(format!("{SCRATCH_PREFIX}alive"));
        let starting = root.path().join(format!("{SCRATCH_PREFIX}starting"));
        let other = root.path().join("someone-elses");
        for d in [&dead, &alive, &starting, &other] {
            std::fs::create_dir_all(d.join("out")).unwrap();
        }
        std::fs::File::create(dead.join(SCRATCH_LOCK)).unwrap();
        let held = std::fs::File::create(alive.join(SCRATCH_LOCK)).unwrap();
        held.lock().unwrap();
        sweep_stale_scratch(root.path());
        assert!(!dead.exists(), "a free lock: its worker is gone");
        assert!(alive.exists(), "a held lock: its worker runs");
        assert!(starting.exists(), "no lock yet, and young");
        assert!(other.exists(), "not ours");
    }
}
