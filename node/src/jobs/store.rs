//! Job state on disk: a job's spec once, then an append-only log of decided
//! tasks, so a coordinator (or a backup) that restarts carries its jobs on.
//!
//! Layout under the data dir: `jobs/<id>.spec` and `jobs/<id>.log` for jobs
//! this node coordinates, `backups/<id>.spec` and `backups/<id>.log` for
//! copies of other coordinators' jobs. The spec is written to a temporary
//! file and renamed; the log is a sequence of length-prefixed MessagePack
//! frames, and a torn last frame (a crash mid-write) is ignored on load.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chorus_sdk::job::{DecidedTask, JobId, JobSpec};
use serde::{Deserialize, Serialize};
use tracing::warn;

/// Which copy a stored job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// This node coordinates it.
    Primary,
    /// A copy of another coordinator's job.
    Backup,
}

impl Role {
    fn dir(self) -> &'static str {
        match self {
            Role::Primary => "jobs",
            Role::Backup => "backups",
        }
    }
}

/// One entry of a job's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LogEntry {
    /// Tasks decided.
    Decided(Vec<DecidedTask>),
    /// The submitter cancelled the job.
    Cancelled,
    /// The job moved to a new coordinator (the count so far).
    Failovers(u32),
}

/// A job as loaded from disk.
#[derive(Clone, Debug)]
pub struct StoredJob {
    /// Its spec.
    pub spec: JobSpec,
    /// Decided tasks by index.
    pub decided: BTreeMap<u32, DecidedTask>,
    /// Whether it was cancelled.
    pub cancelled: bool,
    /// Failovers so far.
    pub failovers: u32,
}

/// Errors of the store; the caller logs them and goes on (the job still
/// runs and is still copied to the successors).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be written or read.
    #[error("job store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A record could not be encoded.
    #[error("job store: cannot encode: {0}")]
    Encode(String),
}

/// The job store of one node.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// A store under `data_dir`.
    pub fn new(data_dir: &Path) -> Store {
        Store {
            root: data_dir.to_path_buf(),
        }
    }

    fn path(&self, role: Role, job: JobId, ext: &str) -> PathBuf {
        self.root.join(role.dir()).join(format!("{job}.{ext}"))
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Writes a job's spec (and starts an empty log).
    pub fn save_spec(&self, role: Role, job: JobId, spec: &JobSpec) -> Result<(), StoreError> {
        let dir = self.root.join(role.dir());
        fs::create_dir_all(&dir).map_err(Self::io(&dir))?;
        let bytes = rmp_serde::to_vec_named(spec).map_err(|e| StoreError::Encode(e.to_string()))?;
        let path = self.path(role, job, "spec");
        // A temporary name of our own: two copies of one job may be stored at
        // once (a coordinator's first copy racing its retry).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.path(role, job, &format!("spec.{}.{n}.tmp", std::process::id()));
        let mut f = File::create(&tmp).map_err(Self::io(&tmp))?;
        f.write_all(&bytes).map_err(Self::io(&tmp))?;
        f.sync_all().map_err(Self::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(Self::io(&path))?;
        let log = self.path(role, job, "log");
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(Self::io(&log))?;
        Ok(())
    }

    /// Appends one entry to a job's log.
    pub fn append(&self, role: Role, job: JobId, entry: &LogEntry) -> Result<(), StoreError> {
        let body = rmp_serde::to_vec_named(entry).map_err(|e| StoreError::Encode(e.to_string()))?;
        let len = u32::try_from(body.len()).map_err(|e| StoreError::Encode(e.to_string()))?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&body);
        let path = self.path(role, job, "log");
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(Self::io(&path))?;
        f.write_all(&frame).map_err(Self::io(&path))?;
        Ok(())
    }

    /// Removes a job's files (a backup promoted to primary, or one dropped).
    pub fn remove(&self, role: Role, job: JobId) {
        for ext in ["spec", "log"] {
            let _ = fs::remove_file(self.path(role, job, ext));
        }
    }

    /// Every stored job of `role`. Unreadable files are logged and skipped.
    pub fn load_all(&self, role: Role) -> Vec<(JobId, StoredJob)> {
        let dir = self.root.join(role.dir());
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("spec") {
                continue;
            }
            let Some(job) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<JobId>().ok())
            else {
                continue;
            };
            match self.load(role, job) {
                Ok(j) => out.push((job, j)),
                Err(e) => warn!(%job, error = %e, "skipping unreadable stored job"),
            }
        }
        out
    }

    fn load(&self, role: Role, job: JobId) -> Result<StoredJob, StoreError> {
        let path = self.path(role, job, "spec");
        let bytes = fs::read(&path).map_err(Self::io(&path))?;
        let spec: JobSpec = rmp_serde::from_slice(&bytes).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        let mut stored = StoredJob {
            spec,
            decided: BTreeMap::new(),
            cancelled: false,
            failovers: 0,
        };
        let log = self.path(role, job, "log");
        let mut buf = Vec::new();
        if let Ok(mut f) = File::open(&log) {
            f.read_to_end(&mut buf).map_err(Self::io(&log))?;
        }
        let mut at = 0usize;
        while let Some(header) = buf.get(at..at + 4) {
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let Some(body) = buf.get(at + 4..at + 4 + len) else {
                break; // torn last frame
            };
            match rmp_serde::from_slice::<LogEntry>(body) {
                Ok(LogEntry::Decided(tasks)) => {
                    for t in tasks {
                        stored.decided.insert(t.task, t);
                    }
                }
                Ok(LogEntry::Cancelled) => stored.cancelled = true,
                Ok(LogEntry::Failovers(n)) => stored.failovers = n,
                Err(_) => break,
            }
            at += 4 + len;
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_core::jobs::Policy;
    use chorus_sdk::bundle::{Bundle, Manifest};
    use chorus_sdk::identity::Identity;
    use chorus_sdk::job::TaskResult;

    #[test]
    fn spec_and_log_survive_a_restart_and_a_torn_write() {
        let dir = std::env::temp_dir().join(format!("chorus-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let id = Identity::generate().unwrap();
        let b = Bundle::sign(Manifest::new("t", "1", [0; 32]), b"\0asm".to_vec(), &id).unwrap();
        let spec = JobSpec::new(
            &b,
            vec![vec![1], vec![2]],
            Policy::new(2, None, None).ok(),
            None,
            1,
        )
        .unwrap();
        let job = spec.id();
        let store = Store::new(&dir);
        store.save_spec(Role::Primary, job, &spec).unwrap();
        let decided = DecidedTask {
            task: 1,
            result: TaskResult::Output(serde_bytes::ByteBuf::from(b"x".to_vec())),
            agreeing: vec![],
            disagreeing: vec![],
            votes: 2,
        };
        store
            .append(
                Role::Primary,
                job,
                &LogEntry::Decided(vec![decided.clone()]),
            )
            .unwrap();
        store
            .append(Role::Primary, job, &LogEntry::Failovers(1))
            .unwrap();
        // A torn frame at the end.
        let log = store.path(Role::Primary, job, "log");
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[0, 0, 1, 0, 9]).unwrap();
        let loaded = Store::new(&dir).load_all(Role::Primary);
        assert_eq!(loaded.len(), 1);
        let (got_id, got) = &loaded[0];
        assert_eq!(*got_id, job);
        assert_eq!(got.spec, spec);
        assert_eq!(got.decided.get(&1), Some(&decided));
        assert_eq!(got.failovers, 1);
        assert!(!got.cancelled);
        assert!(Store::new(&dir).load_all(Role::Backup).is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
