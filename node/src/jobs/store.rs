//! Job state on disk, in one embedded transactional database
//! (`DATA_DIR/jobs.redb`, [redb]), so a coordinator (or a backup) that
//! restarts carries its jobs on.
//!
//! Every call is one write transaction, committed durably (redb's default:
//! an fsync before `commit` returns). A call that returned `Ok` survives a
//! later crash of the process, or of the machine as far as the disk honours
//! fsync; a call cut short by a crash is wholly on disk or wholly absent,
//! never torn. A test kills a writer at random points and checks that.
//!
//! # Tables
//!
//! Keys carry the [`Role`] (`0` primary, `1` backup) and the job id, so the
//! two copies of a job never mix. Values are MessagePack (named fields).
//!
//! - `specs`: `(role, job)` → [`JobSpec`], written by [`Store::put_job`], moved by
//!   [`Store::promote`].
//! - `flags`: `(role, job)` → cancelled and failovers, small, so that
//!   [`Store::set_cancelled`] and [`Store::set_failovers`] never rewrite a spec.
//! - `decided`: `(role, job, task)` → [`DecidedTask`], one row a task, so that
//!   [`Store::add_decided`] writes only the new tasks.
//! - `meta`: `"format"` → the layout version ([`FORMAT`]), checked on open.
//!
//! # Cost
//!
//! One fsync per call, whatever it writes. On the development VM (ext4 on
//! virtio) 1,000 `add_decided` calls of one task each took about 0.25 s,
//! 0.25 ms a call: the same as a bare 4 KiB write and `fdatasync` there, so
//! the fsync is the cost, and on a disk whose fsync takes milliseconds every
//! call does too. Decide tasks in batches and store a batch with one
//! `add_decided`. Calls block the thread: from async code, run them on
//! `spawn_blocking`.
//!
//! # Concurrency
//!
//! [`Store`] is a cheap `Clone` over one `Arc<redb::Database>`. redb runs one
//! write transaction at a time (a second waits for the first) and lets reads
//! run beside it on the last commit. The file is locked: a second process
//! opening the same data dir gets [`StoreError::Locked`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chorus_sdk::job::{DecidedTask, JobId, JobSpec};
use chorus_sdk::stored::{self, JobFlags};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_bytes::ByteBuf;
use tracing::warn;

pub use chorus_sdk::job::JobSnapshot;

/// The layout version this store writes and reads.
pub const FORMAT: u32 = 1;
/// The database file under the data dir.
pub const FILE_NAME: &str = "jobs.redb";

const SPECS: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("specs");
const FLAGS: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("flags");
const DECIDED: TableDefinition<(u8, u64, u32), &[u8]> = TableDefinition::new("decided");
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
/// The coordinator's trust records of workers, one MessagePack value.
const TRUST: TableDefinition<&str, &[u8]> = TableDefinition::new("trust");

/// Which copy a stored job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// This node coordinates it.
    Primary,
    /// A copy of another coordinator's job.
    Backup,
}

/// Errors of the store. On any error of a write nothing changed, except
/// [`StoreError::Db`] from the commit itself: then the write may or may not
/// be on disk and redb refuses further writes until the store is reopened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data dir could not be created. Nothing was opened.
    #[error("job store: cannot create {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process (or another [`Store`] in this one) has the database
    /// open. Nothing was opened.
    #[error("job store {path} is in use by another process (another node on this data dir?)")]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The database file could not be opened or repaired. Nothing was opened.
    #[error("job store {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: redb::DatabaseError,
    },
    /// The database was written in a layout this node does not read.
    /// Nothing was opened or changed.
    #[error("job store {path} has format {found}, this node reads format {FORMAT}")]
    Format {
        /// The database file.
        path: PathBuf,
        /// The format found.
        found: u32,
    },
    /// A transaction, table or storage operation failed.
    #[error("job store: {0}")]
    Db(#[from] redb::Error),
    /// The job is not stored in that role. Nothing changed.
    #[error("job {job} is not stored as {role:?}")]
    NotStored {
        /// The role asked for.
        role: Role,
        /// The job.
        job: JobId,
    },
    /// A record could not be encoded. Nothing changed.
    #[error("job store: cannot encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// A stored record could not be read back (damaged, or written by other
    /// code). Nothing changed.
    #[error("job {job} ({role:?}): stored {record} unreadable: {source}")]
    Decode {
        /// The role.
        role: Role,
        /// The job.
        job: JobId,
        /// Which record.
        record: Record,
        /// Why.
        source: DecodeError,
    },
}

/// One record of a stored job, as named in [`StoreError::Decode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// The spec.
    Spec,
    /// The cancelled flag and failover count.
    Flags,
    /// A decided task.
    Decided(u32),
}

/// Why a stored record could not be read back (the codec of the records
/// lives in [`chorus_sdk::stored`], where the fuzzers reach it).
pub use chorus_sdk::stored::RecordError as DecodeError;

/// The job store of one node: one redb database under the data dir.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) `data_dir/jobs.redb`, creating `data_dir` first.
    /// After a crash redb repairs the file here, back to its last commit.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path: path.clone() },
            source => StoreError::Open {
                path: path.clone(),
                source,
            },
        })?;
        // Create every table (a read transaction cannot open a missing one)
        // and stamp or check the layout version, in one transaction.
        let txn = db.begin_write()?;
        {
            txn.open_table(SPECS)?;
            txn.open_table(FLAGS)?;
            txn.open_table(DECIDED)?;
            txn.open_table(TRUST)?;
            let mut meta = txn.open_table(META)?;
            let found = meta.get("format")?.map(|v| v.value());
            match found {
                None => {
                    meta.insert("format", FORMAT)?;
                }
                Some(FORMAT) => {}
                Some(found) => return Err(StoreError::Format { path, found }),
            }
        }
        txn.commit()?;
        Ok(Store {
            db: Arc::new(db),
            path,
        })
    }

    /// Stores the trust records (replacing the last ones).
    pub fn put_trust(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(TRUST)?.insert("workers", bytes)?;
            Ok(())
        })
    }

    /// The stored trust records, if any.
    pub fn load_trust(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TRUST)?;
        Ok(table.get("workers")?.map(|v| v.value().to_vec()))
    }

    /// Stores a job whole: spec, decided tasks, flags, in one transaction.
    /// Replaces whatever was stored of that job in that role. Once it returns
    /// `Ok` the job is acknowledged: on disk, and it survives a crash.
    /// `snap.decided` is stored by each task's own `task` field.
    pub fn put_job(&self, role: Role, job: JobId, snap: &JobSnapshot) -> Result<(), StoreError> {
        let spec = stored::encode_spec(&snap.spec)?;
        let flags = JobFlags {
            cancel: snap.cancel.clone(),
            failovers: snap.failovers,
        }
        .encode()?;
        let decided = encode_tasks(snap.decided.values())?;
        let (r, j) = (role.key(), job.0.0);
        self.write(|txn| {
            txn.open_table(SPECS)?.insert((r, j), spec.as_slice())?;
            txn.open_table(FLAGS)?.insert((r, j), flags.as_slice())?;
            let mut table = txn.open_table(DECIDED)?;
            table.retain_in((r, j, 0)..=(r, j, u32::MAX), |_, _| false)?;
            for (task, bytes) in &decided {
                table.insert((r, j, *task), bytes.as_slice())?;
            }
            Ok(())
        })
    }

    /// Adds decided tasks to a stored job, in one transaction (a task decided
    /// again is replaced). [`StoreError::NotStored`] if the job is not stored
    /// in `role`.
    pub fn add_decided(
        &self,
        role: Role,
        job: JobId,
        tasks: &[DecidedTask],
    ) -> Result<(), StoreError> {
        let decided = encode_tasks(tasks)?;
        let (r, j) = (role.key(), job.0.0);
        self.write(|txn| {
            if txn.open_table(SPECS)?.get((r, j))?.is_none() {
                return Err(StoreError::NotStored { role, job });
            }
            let mut table = txn.open_table(DECIDED)?;
            for (task, bytes) in &decided {
                table.insert((r, j, *task), bytes.as_slice())?;
            }
            Ok(())
        })
    }

    /// Marks a stored job cancelled with the submitter's `signature`.
    /// [`StoreError::NotStored`] if it is not stored in `role`.
    pub fn set_cancelled(
        &self,
        role: Role,
        job: JobId,
        signature: &ByteBuf,
    ) -> Result<(), StoreError> {
        self.update_flags(role, job, |f| f.cancel = Some(signature.clone()))
    }

    /// Sets a stored job's failover count. [`StoreError::NotStored`] if it is
    /// not stored in `role`.
    pub fn set_failovers(&self, role: Role, job: JobId, n: u32) -> Result<(), StoreError> {
        self.update_flags(role, job, |f| f.failovers = n)
    }

    /// A stored job, or `None`. A decided task that cannot be read back is
    /// logged and left out (the job decides it again); an unreadable spec or
    /// flags is [`StoreError::Decode`].
    pub fn load(&self, role: Role, job: JobId) -> Result<Option<JobSnapshot>, StoreError> {
        let txn = self.db.begin_read()?;
        let tables = ReadTables::open(&txn)?;
        tables.load(role, job)
    }

    /// Every job stored in `role`, read from one consistent commit. A job
    /// whose spec or flags cannot be read back is logged and skipped, as is
    /// an unreadable decided task; the rest load.
    pub fn load_all(&self, role: Role) -> Result<Vec<(JobId, JobSnapshot)>, StoreError> {
        let txn = self.db.begin_read()?;
        let tables = ReadTables::open(&txn)?;
        let r = role.key();
        let mut jobs = Vec::new();
        for entry in tables.specs.range((r, 0)..=(r, u64::MAX))? {
            let (key, _) = entry?;
            jobs.push(JobId(chorus_core::RingPos(key.value().1)));
        }
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            match tables.load(role, job) {
                Ok(Some(snap)) => out.push((job, snap)),
                Ok(None) => {}
                Err(e @ StoreError::Decode { .. }) => {
                    warn!(%job, ?role, error = %e, "skipping unreadable stored job");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Removes a job in `role`, whole, in one transaction. Removing a job
    /// that is not stored is not an error.
    pub fn remove(&self, role: Role, job: JobId) -> Result<(), StoreError> {
        let (r, j) = (role.key(), job.0.0);
        self.write(|txn| {
            txn.open_table(SPECS)?.remove((r, j))?;
            txn.open_table(FLAGS)?.remove((r, j))?;
            txn.open_table(DECIDED)?
                .retain_in((r, j, 0)..=(r, j, u32::MAX), |_, _| false)?;
            Ok(())
        })
    }

    /// Takes a job over: its backup copy becomes the primary one, with
    /// `failovers` set, in one transaction, so a crash leaves either the
    /// backup or the primary, never both or neither. Replaces any primary
    /// copy of the job. [`StoreError::NotStored`] if there is no backup.
    pub fn promote(&self, job: JobId, failovers: u32) -> Result<(), StoreError> {
        let (b, p, j) = (Role::Backup.key(), Role::Primary.key(), job.0.0);
        self.write(|txn| {
            // The spec and tasks move as bytes: nothing to decode but the flags.
            let mut specs = txn.open_table(SPECS)?;
            let Some(spec) = specs.remove((b, j))?.map(|v| v.value().to_vec()) else {
                return Err(StoreError::NotStored {
                    role: Role::Backup,
                    job,
                });
            };
            specs.insert((p, j), spec.as_slice())?;
            let mut flags_table = txn.open_table(FLAGS)?;
            let flags = flags_table.remove((b, j))?.map(|v| v.value().to_vec());
            let mut flags = JobFlags::decode(flags.as_deref())
                .map_err(|source| decode(Role::Backup, job, Record::Flags, source))?;
            flags.failovers = failovers;
            flags_table.insert((p, j), flags.encode()?.as_slice())?;
            let mut decided = txn.open_table(DECIDED)?;
            let mut moved = Vec::new();
            for entry in decided.extract_from_if((b, j, 0)..=(b, j, u32::MAX), |_, _| true)? {
                let (key, value) = entry?;
                moved.push((key.value().2, value.value().to_vec()));
            }
            decided.retain_in((p, j, 0)..=(p, j, u32::MAX), |_, _| false)?;
            for (task, bytes) in &moved {
                decided.insert((p, j, *task), bytes.as_slice())?;
            }
            Ok(())
        })
    }

    /// Reads a job's flags, changes them and writes them back, in one transaction.
    fn update_flags(
        &self,
        role: Role,
        job: JobId,
        change: impl FnOnce(&mut JobFlags),
    ) -> Result<(), StoreError> {
        let (r, j) = (role.key(), job.0.0);
        self.write(|txn| {
            if txn.open_table(SPECS)?.get((r, j))?.is_none() {
                return Err(StoreError::NotStored { role, job });
            }
            let mut table = txn.open_table(FLAGS)?;
            let bytes = table.get((r, j))?.map(|v| v.value().to_vec());
            let mut flags = JobFlags::decode(bytes.as_deref())
                .map_err(|source| decode(role, job, Record::Flags, source))?;
            change(&mut flags);
            table.insert((r, j), flags.encode()?.as_slice())?;
            Ok(())
        })
    }

    /// Runs `f` in a write transaction and commits it durably if `f`
    /// returns `Ok`; on an error the transaction is dropped (rolled back).
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        f(&txn)?;
        txn.commit()?;
        Ok(())
    }
}

impl Role {
    /// The role's byte in table keys. Stored on disk: never renumber.
    fn key(self) -> u8 {
        match self {
            Role::Primary => 0,
            Role::Backup => 1,
        }
    }
}

// redb's per-operation errors, by way of `redb::Error`, so that `?` works.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> StoreError {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TableError,
    redb::StorageError,
    redb::TransactionError,
    redb::CommitError
);

/// The tables of one read transaction.
struct ReadTables {
    specs: redb::ReadOnlyTable<(u8, u64), &'static [u8]>,
    flags: redb::ReadOnlyTable<(u8, u64), &'static [u8]>,
    decided: redb::ReadOnlyTable<(u8, u64, u32), &'static [u8]>,
}

impl ReadTables {
    fn open(txn: &redb::ReadTransaction) -> Result<ReadTables, StoreError> {
        Ok(ReadTables {
            specs: txn.open_table(SPECS)?,
            flags: txn.open_table(FLAGS)?,
            decided: txn.open_table(DECIDED)?,
        })
    }

    fn load(&self, role: Role, job: JobId) -> Result<Option<JobSnapshot>, StoreError> {
        let (r, j) = (role.key(), job.0.0);
        let Some(spec) = self.specs.get((r, j))? else {
            return Ok(None);
        };
        let spec: JobSpec =
            stored::decode_spec(spec.value()).map_err(|e| decode(role, job, Record::Spec, e))?;
        let flags = self.flags.get((r, j))?;
        let flags = JobFlags::decode(flags.as_ref().map(|v| v.value()))
            .map_err(|e| decode(role, job, Record::Flags, e))?;
        let mut decided = BTreeMap::new();
        for entry in self.decided.range((r, j, 0)..=(r, j, u32::MAX))? {
            let (key, value) = entry?;
            let key = key.value().2;
            match stored::decode_task(key, value.value()) {
                Ok(task) => {
                    decided.insert(key, task);
                }
                Err(source) => {
                    let e = decode(role, job, Record::Decided(key), source);
                    warn!(%job, ?role, task = key, error = %e, "skipping unreadable decided task");
                }
            }
        }
        Ok(Some(JobSnapshot {
            spec,
            decided,
            cancel: flags.cancel,
            failovers: flags.failovers,
        }))
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Record::Spec => f.write_str("spec"),
            Record::Flags => f.write_str("flags"),
            Record::Decided(task) => write!(f, "decided task {task}"),
        }
    }
}

fn decode(role: Role, job: JobId, record: Record, source: DecodeError) -> StoreError {
    StoreError::Decode {
        role,
        job,
        record,
        source,
    }
}

fn encode_tasks<'a>(
    tasks: impl IntoIterator<Item = &'a DecidedTask>,
) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
    tasks
        .into_iter()
        .map(|t| Ok((t.task, stored::encode_task(t)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use chorus_core::jobs::Policy;
    use chorus_sdk::bundle::{Bundle, Manifest};
    use chorus_sdk::identity::Identity;
    use chorus_sdk::identity::PeerId;
    use chorus_sdk::job::TaskResult;
    use serde_bytes::ByteBuf;

    use super::*;

    /// Selects the crash test's child mode: the data dir it writes to.
    const CRASH_DIR: &str = "CHORUS_STORE_CRASH_DIR";
    /// The child's round (keeps job ids apart between rounds) and seed.
    const CRASH_ROUND: &str = "CHORUS_STORE_CRASH_ROUND";
    /// Selects the lock test's child mode: the data dir it tries to open.
    const LOCK_DIR: &str = "CHORUS_STORE_LOCK_DIR";
    /// Overrides the crash test's seed, to replay a failure.
    const SEED: &str = "CHORUS_STORE_CRASH_SEED";
    /// Tasks of every job the crash child writes.
    const TASKS: u32 = 8;

    #[test]
    fn every_operation_round_trips_and_roles_stay_apart() {
        fn shareable<T: Clone + Send + Sync>() {}
        shareable::<Store>();
        let dir = TempDir::new("ops");
        let id = Identity::generate().unwrap();
        let (a, b) = (spec(&id, 4, 1), spec(&id, 4, 2));
        let (ja, jb) = (a.id(), b.id());
        let store = Store::open(&dir.0).unwrap();

        let primary_a = snapshot(&a, [0]);
        let backup_a = JobSnapshot {
            failovers: 3,
            ..snapshot(&a, [0, 3])
        };
        store.put_job(Role::Primary, ja, &primary_a).unwrap();
        store.put_job(Role::Backup, ja, &backup_a).unwrap();
        store.put_job(Role::Backup, jb, &snapshot(&b, [])).unwrap();
        assert_eq!(store.load(Role::Primary, ja).unwrap(), Some(primary_a));
        assert_eq!(
            store.load(Role::Backup, ja).unwrap().as_ref(),
            Some(&backup_a)
        );
        assert_eq!(store.load(Role::Primary, jb).unwrap(), None);

        store
            .add_decided(Role::Primary, ja, &[decided(ja, 1), decided(ja, 2)])
            .unwrap();
        store
            .set_cancelled(Role::Primary, ja, &ByteBuf::from(vec![9; 64]))
            .unwrap();
        store.set_failovers(Role::Primary, ja, 2).unwrap();
        let got = store.load(Role::Primary, ja).unwrap().unwrap();
        assert_eq!(got.decided, snapshot(&a, [0, 1, 2]).decided);
        assert_eq!(got.cancel, Some(ByteBuf::from(vec![9; 64])));
        assert_eq!(got.failovers, 2);
        assert_eq!(
            store.load(Role::Backup, ja).unwrap().as_ref(),
            Some(&backup_a)
        );

        // Not stored in that role: refused, and nothing appears.
        assert!(matches!(
            store.add_decided(Role::Primary, jb, &[decided(jb, 0)]),
            Err(StoreError::NotStored { role: Role::Primary, job }) if job == jb
        ));
        assert!(matches!(
            store.set_cancelled(Role::Primary, jb, &ByteBuf::new()),
            Err(StoreError::NotStored { .. })
        ));
        assert!(matches!(
            store.set_failovers(Role::Primary, jb, 1),
            Err(StoreError::NotStored { .. })
        ));
        assert_eq!(store.load(Role::Primary, jb).unwrap(), None);

        // A put replaces the job whole, decided tasks and flags too.
        let fresh = snapshot(&a, [3]);
        store.put_job(Role::Primary, ja, &fresh).unwrap();
        assert_eq!(
            store.load(Role::Primary, ja).unwrap().as_ref(),
            Some(&fresh)
        );

        // All of it is on disk.
        drop(store);
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(
            store.load_all(Role::Primary).unwrap(),
            vec![(ja, fresh.clone())]
        );
        let mut backups = store.load_all(Role::Backup).unwrap();
        backups.sort_by_key(|(job, _)| *job);
        let mut want = vec![(ja, backup_a.clone()), (jb, snapshot(&b, []))];
        want.sort_by_key(|(job, _)| *job);
        assert_eq!(backups, want);

        store.remove(Role::Backup, jb).unwrap();
        store.remove(Role::Backup, jb).unwrap();
        assert_eq!(store.load(Role::Backup, jb).unwrap(), None);

        // A takeover: the backup replaces the primary, with its failovers set.
        store.promote(ja, 5).unwrap();
        assert_eq!(store.load(Role::Backup, ja).unwrap(), None);
        assert_eq!(
            store.load(Role::Primary, ja).unwrap(),
            Some(JobSnapshot {
                failovers: 5,
                ..backup_a
            })
        );
        assert!(store.load_all(Role::Backup).unwrap().is_empty());
        assert!(matches!(
            store.promote(ja, 6),
            Err(StoreError::NotStored {
                role: Role::Backup,
                ..
            })
        ));
        store.remove(Role::Primary, ja).unwrap();
        assert!(store.load_all(Role::Primary).unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_record_is_skipped_and_the_rest_load() {
        let dir = TempDir::new("corrupt");
        let id = Identity::generate().unwrap();
        let store = Store::open(&dir.0).unwrap();
        let specs: Vec<JobSpec> = (0..4).map(|n| spec(&id, 4, n)).collect();
        for s in &specs {
            store
                .put_job(Role::Primary, s.id(), &snapshot(s, [0, 1, 2]))
                .unwrap();
        }
        let [good, bad_spec, bad_task, bad_flags] = [0, 1, 2, 3].map(|n| specs[n].id());
        let txn = store.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(SPECS).unwrap();
            t.insert((0, bad_spec.0.0), &b"\xc1 not msgpack"[..])
                .unwrap();
            let mut t = txn.open_table(DECIDED).unwrap();
            t.insert((0, bad_task.0.0, 1), &b"\xc1"[..]).unwrap();
            // Task 0's record stored under index 2.
            let zero = rmp_serde::to_vec_named(&decided(bad_task, 0)).unwrap();
            t.insert((0, bad_task.0.0, 2), zero.as_slice()).unwrap();
            txn.open_table(FLAGS)
                .unwrap()
                .remove((0, bad_flags.0.0))
                .unwrap();
        }
        txn.commit().unwrap();

        let mut all = store.load_all(Role::Primary).unwrap();
        all.sort_by_key(|(job, _)| *job);
        let mut want = vec![
            (good, snapshot(&specs[0], [0, 1, 2])),
            (bad_task, snapshot(&specs[2], [0])),
        ];
        want.sort_by_key(|(job, _)| *job);
        assert_eq!(all, want);
        assert!(matches!(
            store.load(Role::Primary, bad_spec),
            Err(StoreError::Decode {
                record: Record::Spec,
                source: DecodeError::Msgpack(_),
                ..
            })
        ));
        assert!(matches!(
            store.load(Role::Primary, bad_flags),
            Err(StoreError::Decode {
                record: Record::Flags,
                source: DecodeError::Missing,
                ..
            })
        ));
        // The store still writes, and a put repairs a damaged job.
        store
            .put_job(Role::Primary, bad_spec, &snapshot(&specs[1], [1]))
            .unwrap();
        assert_eq!(
            store.load(Role::Primary, bad_spec).unwrap(),
            Some(snapshot(&specs[1], [1]))
        );
    }

    #[test]
    fn a_second_process_cannot_open_the_store() {
        let dir = TempDir::new("lock");
        let store = Store::open(&dir.0).unwrap();
        assert!(matches!(
            Store::open(&dir.0),
            Err(StoreError::Locked { .. })
        ));
        let out = child("lock_child", &[(LOCK_DIR, dir.0.display().to_string())])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "lock child failed: {stdout}");
        assert!(stdout.contains("lock child: locked"), "{stdout}");
        drop(store);
        let out = child("lock_child", &[(LOCK_DIR, dir.0.display().to_string())])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("lock child: opened"), "{stdout}");
    }

    /// The child of `a_second_process_cannot_open_the_store`; passes at once
    /// when run as an ordinary test.
    #[test]
    fn lock_child() {
        let Some(dir) = std::env::var_os(LOCK_DIR) else {
            return;
        };
        match Store::open(Path::new(&dir)) {
            Ok(_) => println!("lock child: opened"),
            Err(StoreError::Locked { .. }) => println!("lock child: locked"),
            Err(e) => println!("lock child: {e}"),
        }
    }

    /// Kills a writer (this test binary, re-run as `crash_child`) with
    /// SIGKILL at seeded random points, reopens the store after each kill and
    /// checks that every job and decided task the writer acknowledged is
    /// there and intact.
    #[test]
    fn a_crash_at_any_point_loses_no_acknowledged_job() {
        const ROUNDS: u64 = 20;
        let seed = std::env::var(SEED)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0xC40_5EED_u64);
        println!("crash test seed {seed} (replay with {SEED}={seed})");
        let mut rng = Rng(seed);
        let dir = TempDir::new("crash");
        let started = Instant::now();
        // Per job, the most decided tasks (0..n) acknowledged.
        let mut acked: BTreeMap<JobId, u32> = BTreeMap::new();
        let mut acks = 0usize;
        for round in 0..ROUNDS {
            let mut proc = child(
                "crash_child",
                &[
                    (CRASH_DIR, dir.0.display().to_string()),
                    (CRASH_ROUND, format!("{round}")),
                ],
            )
            .spawn()
            .unwrap();
            let stdout = proc.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let mut lines = Vec::new();
            // Kill only once it writes, then after a random delay.
            loop {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(line) if line.starts_with("acked ") => {
                        lines.push(line);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = proc.kill();
                        panic!("round {round}: the child never acknowledged a write: {e}");
                    }
                }
            }
            let delay = Duration::from_micros(rng.below(150_000));
            std::thread::sleep(delay);
            assert!(
                proc.try_wait().unwrap().is_none(),
                "round {round}: the child exited before it was killed (seed {seed})"
            );
            proc.kill().unwrap();
            let status = proc.wait().unwrap();
            assert_eq!(status.signal(), Some(9), "round {round}: {status}");
            reader.join().unwrap();
            // Lines still in the pipe were printed, so acknowledged, too.
            lines.extend(rx.try_iter());
            for line in lines.iter().filter_map(|l| l.strip_prefix("acked ")) {
                let (job, n) = line.split_once(' ').unwrap();
                let (job, n): (JobId, u32) = (job.parse().unwrap(), n.parse().unwrap());
                let most = acked.entry(job).or_default();
                *most = (*most).max(n);
                acks += 1;
            }

            let store = Store::open(&dir.0).unwrap();
            for (&job, &n) in &acked {
                let Some(snap) = store.load(Role::Primary, job).unwrap() else {
                    panic!("round {round}: acknowledged job {job} lost (seed {seed})");
                };
                for task in 0..n {
                    assert!(
                        snap.decided.contains_key(&task),
                        "round {round}: acknowledged task {task} of {job} lost (seed {seed})"
                    );
                }
            }
            // Every stored job is intact, acknowledged or not.
            let all = store.load_all(Role::Primary).unwrap();
            assert!(all.len() >= acked.len());
            for (job, snap) in &all {
                assert_eq!(snap.spec.id(), *job, "round {round}: spec of {job} damaged");
                assert_eq!(snap.spec.inputs.len(), TASKS as usize);
                for (&task, got) in &snap.decided {
                    assert_eq!(
                        *got,
                        decided(*job, task),
                        "round {round}: task {task} of {job}"
                    );
                }
                assert!(!snap.is_cancelled());
                assert_eq!(snap.failovers, 0);
            }
            println!(
                "round {round}: killed after {delay:?}, {} jobs stored, {} acknowledged",
                all.len(),
                acked.len()
            );
        }

        // After all that the store still takes writes.
        let store = Store::open(&dir.0).unwrap();
        let id = Identity::generate().unwrap();
        let s = spec(&id, TASKS, u64::MAX);
        store
            .put_job(Role::Primary, s.id(), &snapshot(&s, []))
            .unwrap();
        store
            .add_decided(Role::Primary, s.id(), &[decided(s.id(), 0)])
            .unwrap();
        assert_eq!(
            store.load(Role::Primary, s.id()).unwrap(),
            Some(snapshot(&s, [0]))
        );
        println!(
            "{ROUNDS} kills, {acks} acknowledged writes over {} jobs, in {:?}",
            acked.len(),
            started.elapsed()
        );
    }

    /// The writer of `a_crash_at_any_point_loses_no_acknowledged_job`; passes
    /// at once when run as an ordinary test. Prints `acked <job> <n>` after
    /// each write returns: job stored with tasks `0..n` decided.
    #[test]
    fn crash_child() {
        let Some(dir) = std::env::var_os(CRASH_DIR) else {
            return;
        };
        let round: u64 = std::env::var(CRASH_ROUND).unwrap().parse().unwrap();
        let mut rng = Rng(round.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xC4_11D);
        let store = Store::open(Path::new(&dir)).unwrap();
        let id = Identity::generate().unwrap();
        // Bounded: far more than a round's delay lets it write.
        for n in 0..10_000u64 {
            let s = spec(&id, TASKS, (round << 32) | n);
            let job = s.id();
            let mut done = rng.below(3) as u32;
            store
                .put_job(Role::Primary, job, &snapshot(&s, 0..done))
                .unwrap();
            println!("acked {job} {done}");
            while done < TASKS {
                let upto = (done + 1 + rng.below(3) as u32).min(TASKS);
                let tasks: Vec<DecidedTask> = (done..upto).map(|t| decided(job, t)).collect();
                store.add_decided(Role::Primary, job, &tasks).unwrap();
                done = upto;
                println!("acked {job} {done}");
            }
        }
    }

    /// This test binary, re-run with only `test` (a test of this module).
    fn child(test: &str, env: &[(&str, String)]) -> Command {
        // `module_path!()` is `chorus_node::…::tests`; test names lack the crate.
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, m)| m);
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            &format!("{module}::{test}"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        cmd
    }

    fn spec(id: &Identity, tasks: u32, nonce: u64) -> JobSpec {
        let b = Bundle::sign(
            Manifest::new("t", "1", id.public_key()),
            b"\0asm\x01\0\0\0".to_vec(),
            id,
        )
        .unwrap();
        let inputs = (0..tasks).map(|t| t.to_be_bytes().to_vec()).collect();
        JobSpec::new(&b, inputs, Policy::new(2, None, None).ok(), None, nonce).unwrap()
    }

    /// Task `task` of `job` as decided: the same every time it is made.
    fn decided(job: JobId, task: u32) -> DecidedTask {
        DecidedTask {
            task,
            result: TaskResult::Output(ByteBuf::from(format!("{job}/{task}").into_bytes())),
            agreeing: vec![PeerId([task as u8; 32]), PeerId([7; 32])],
            disagreeing: vec![PeerId([(task as u8) ^ 0xff; 32])],
            votes: 3,
            attestations: Vec::new(),
            rule: Default::default(),
        }
    }

    fn snapshot(spec: &JobSpec, tasks: impl IntoIterator<Item = u32>) -> JobSnapshot {
        let job = spec.id();
        JobSnapshot {
            spec: spec.clone(),
            decided: tasks.into_iter().map(|t| (t, decided(job, t))).collect(),
            cancel: None,
            failovers: 0,
        }
    }

    /// A fresh directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "chorus-store-redb-{}-{name}-{n}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// splitmix64: a seeded RNG without a dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        }
    }
}
