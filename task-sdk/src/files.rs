//! Files a job ships with its tasks: directory trees mounted in the task's
//! sandbox, and the environment variables it sees.
//!
//! A [`Mount`] is a read-only tree of directories, files and symbolic links
//! that the task sees as a preopened directory at [`Mount::guest`]. The
//! sandbox lays a copy-on-write view over it: the task may write inside, its
//! changes vanish when it ends, nothing reaches the host. A file's content is
//! named by the hash of its bytes ([`FileRef`]), so a manifest stays small
//! whatever the files weigh: the bytes travel as content-addressed blobs,
//! fetched by hash and checked on arrival.
//!
//! Every list here is canonical (sorted, no duplicates) and checked by
//! [`check_mounts`] and [`check_env`], so one set of files has exactly one
//! encoding and one bundle id.

use serde::{Deserialize, Serialize};

use crate::blob::BlobId;

/// Most mounts a manifest may give its tasks.
pub const MAX_MOUNTS: usize = 16;
/// Most entries (files, directories, links) in all of a manifest's mounts.
pub const MAX_ENTRIES: usize = 16_384;
/// Most bytes of one path (a guest mount point or an entry's path).
pub const MAX_PATH_BYTES: usize = 1024;
/// Most environment variables a manifest may set.
pub const MAX_ENV: usize = 256;
/// Most bytes of environment, keys and values summed.
pub const MAX_ENV_BYTES: usize = 32 * 1024;
/// Most bytes of all the files of a job's mounts, summed.
pub const MAX_FILES_BYTES: u64 = 1 << 30;

/// The content of one file: the id of the blob that holds its bytes and
/// its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileRef {
    /// The blob id of the file's bytes.
    pub blob: BlobId,
    /// The file's size in bytes.
    pub size: u64,
}

/// What one entry of a tree is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// A directory (its contents are the entries below its path).
    Dir,
    /// A regular file.
    File(FileRef),
    /// A symbolic link and its target, as written (never followed out of
    /// the mount: the sandbox refuses a target that leaves it).
    Symlink(String),
}

/// One entry of a mounted tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the mount point, `/`-separated, no `.` or `..`
    /// segments, no empty segments. Parents are implied (and may be listed).
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
}

/// A directory tree the task sees at `guest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mount {
    /// The absolute guest path of the preopened directory (`/data`, `/`).
    pub guest: String,
    /// The tree, sorted by path, without duplicates.
    pub entries: Vec<Entry>,
}

/// Why a set of mounts or an environment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilesError {
    /// A guest mount point is not an absolute, normalized path.
    #[error("mount point {0:?} is not an absolute path without . or .. segments")]
    BadMountPoint(String),
    /// Two mounts at the same guest path.
    #[error("two mounts at {0:?}")]
    DuplicateMount(String),
    /// An entry's path is not a relative, normalized path.
    #[error("entry path {0:?} is not a relative path without ., .. or empty segments")]
    BadPath(String),
    /// Entries out of order or repeated: the canonical form is sorted and unique.
    #[error("entries of mount {0:?} are not sorted and unique")]
    NotCanonical(String),
    /// An entry lies below a file or a link.
    #[error("entry {0:?} lies below something that is not a directory")]
    BelowNonDir(String),
    /// Over a count or size bound.
    #[error("too large: {0}")]
    TooLarge(String),
    /// An environment variable is malformed.
    #[error(
        "bad environment variable {0:?}: keys are non-empty, without '=' or NUL; values without NUL"
    )]
    BadEnv(String),
    /// Mounts were not given in order of their guest paths, or repeat a key.
    #[error("{0} are not in canonical order")]
    Order(&'static str),
}

/// Whether `p` is a relative path of normal segments.
pub fn is_relative_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= MAX_PATH_BYTES
        && !p.contains('\0')
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// Whether `p` is `/` or an absolute path of normal segments.
pub fn is_mount_point(p: &str) -> bool {
    p == "/" || (p.starts_with('/') && is_relative_path(&p[1..]))
}

/// Checks mounts: sorted by guest path, unique, each tree canonical, within
/// the bounds. Returns the summed size of the files.
pub fn check_mounts(mounts: &[Mount]) -> Result<u64, FilesError> {
    if mounts.len() > MAX_MOUNTS {
        return Err(FilesError::TooLarge(format!(
            "{} mounts, at most {MAX_MOUNTS}",
            mounts.len()
        )));
    }
    let mut entries = 0usize;
    let mut bytes = 0u64;
    for (i, m) in mounts.iter().enumerate() {
        if !is_mount_point(&m.guest) {
            return Err(FilesError::BadMountPoint(m.guest.clone()));
        }
        if i > 0 {
            match mounts[i - 1].guest.cmp(&m.guest) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(FilesError::DuplicateMount(m.guest.clone()));
                }
                std::cmp::Ordering::Greater => return Err(FilesError::Order("mounts")),
            }
        }
        entries += m.entries.len();
        if entries > MAX_ENTRIES {
            return Err(FilesError::TooLarge(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        for (j, e) in m.entries.iter().enumerate() {
            if !is_relative_path(&e.path) {
                return Err(FilesError::BadPath(e.path.clone()));
            }
            if j > 0 && m.entries[j - 1].path >= e.path {
                return Err(FilesError::NotCanonical(m.guest.clone()));
            }
            // Every listed ancestor must be a directory: walk the prefixes.
            let mut at = 0;
            while let Some(k) = e.path[at..].find('/') {
                let parent = &e.path[..at + k];
                if let Ok(p) = m.entries[..j].binary_search_by(|x| x.path.as_str().cmp(parent))
                    && m.entries[p].kind != EntryKind::Dir
                {
                    return Err(FilesError::BelowNonDir(e.path.clone()));
                }
                at += k + 1;
            }
            match &e.kind {
                EntryKind::File(f) => bytes = bytes.saturating_add(f.size),
                EntryKind::Symlink(t) => {
                    if t.is_empty() || t.len() > MAX_PATH_BYTES || t.contains('\0') {
                        return Err(FilesError::BadPath(t.clone()));
                    }
                }
                EntryKind::Dir => {}
            }
        }
    }
    if bytes > MAX_FILES_BYTES {
        return Err(FilesError::TooLarge(format!(
            "files of {bytes} bytes, at most {MAX_FILES_BYTES}"
        )));
    }
    Ok(bytes)
}

/// Checks an environment: keys non-empty without `=` or NUL, values
/// without NUL, sorted by key and unique, within the bounds.
pub fn check_env(env: &[(String, String)]) -> Result<(), FilesError> {
    if env.len() > MAX_ENV {
        return Err(FilesError::TooLarge(format!(
            "{} environment variables, at most {MAX_ENV}",
            env.len()
        )));
    }
    let total: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    if total > MAX_ENV_BYTES {
        return Err(FilesError::TooLarge(format!(
            "environment of {total} bytes, at most {MAX_ENV_BYTES}"
        )));
    }
    for (i, (k, v)) in env.iter().enumerate() {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(FilesError::BadEnv(k.clone()));
        }
        if i > 0 && env[i - 1].0 >= *k {
            return Err(FilesError::Order("environment variables"));
        }
    }
    Ok(())
}

/// Parses `KEY=VALUE` (the `--env` syntax).
pub fn parse_env(s: &str) -> Result<(String, String), FilesError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(FilesError::BadEnv(s.to_string())),
    }
}

/// Sorts an environment by key; a later value of a key replaces an earlier one.
pub fn canonical_env(env: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let map: std::collections::BTreeMap<String, String> = env.into_iter().collect();
    map.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File(FileRef {
                blob: BlobId([1; 32]),
                size,
            }),
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::Dir,
        }
    }

    #[test]
    fn canonical_mounts_pass_and_others_are_named() {
        let good = vec![Mount {
            guest: "/data".into(),
            entries: vec![dir("a"), file("a/b", 3), file("c", 4)],
        }];
        assert_eq!(check_mounts(&good), Ok(7));
        let mut unsorted = good.clone();
        unsorted[0].entries.swap(1, 2);
        assert_eq!(
            check_mounts(&unsorted),
            Err(FilesError::NotCanonical("/data".into()))
        );
        let mut climb = good.clone();
        climb[0].entries[2].path = "../etc".into();
        assert!(matches!(check_mounts(&climb), Err(FilesError::BadPath(_))));
        let below_file = vec![Mount {
            guest: "/d".into(),
            entries: vec![file("a", 1), file("a/b", 1)],
        }];
        assert_eq!(
            check_mounts(&below_file),
            Err(FilesError::BelowNonDir("a/b".into()))
        );
        for bad in ["data", "/a/../b", "/a//b", "/a/", ""] {
            let m = vec![Mount {
                guest: bad.into(),
                entries: vec![],
            }];
            assert_eq!(
                check_mounts(&m),
                Err(FilesError::BadMountPoint(bad.into())),
                "{bad}"
            );
        }
        let twice = vec![
            Mount {
                guest: "/a".into(),
                entries: vec![],
            },
            Mount {
                guest: "/a".into(),
                entries: vec![],
            },
        ];
        assert_eq!(
            check_mounts(&twice),
            Err(FilesError::DuplicateMount("/a".into()))
        );
        let huge = vec![Mount {
            guest: "/".into(),
            entries: vec![file("a", MAX_FILES_BYTES), file("b", 1)],
        }];
        assert!(matches!(check_mounts(&huge), Err(FilesError::TooLarge(_))));
    }

    #[test]
    fn env_is_checked_and_canonical() {
        let env = canonical_env([
            parse_env("B=2").unwrap(),
            parse_env("A=x=y").unwrap(),
            parse_env("B=3").unwrap(),
        ]);
        assert_eq!(
            env,
            vec![("A".into(), "x=y".into()), ("B".into(), "3".into())]
        );
        assert_eq!(check_env(&env), Ok(()));
        assert!(parse_env("=v").is_err());
        assert!(parse_env("novalue").is_err());
        let unsorted = vec![("B".into(), String::new()), ("A".into(), String::new())];
        assert!(check_env(&unsorted).is_err());
    }
}
