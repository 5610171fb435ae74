//! How a task's directories, environment and arguments are laid out from
//! its bundle and its runtime. One place for the worker (`jobs::files`),
//! `chorus run --python` and the Python benchmark, so that the three run a
//! task exactly alike:
//!
//! - the runtime's mounts first, then the program's own directory (the
//!   bundle's module bytes at the runtime's program path), then the bundle's
//!   mounts (`--dir` for `chorus run`), in that order (fds 3, 4, ...);
//! - the bundle's environment laid over the runtime's;
//! - argv: the runtime's `argv0`, its arguments, the program path, then the
//!   bundle's arguments.
//!
//! Reading the files is the caller's business (local files, or blobs
//! fetched from peers); [`mount_tree`] takes them from a map by blob id and
//! checks each against the size its manifest names.

use std::collections::HashMap;
use std::sync::Arc;

use chorus_sdk::blob::BlobId;
use chorus_sdk::files::{EntryKind, Mount};
use chorus_sdk::runtime::RuntimeManifest;
use chorus_wasi::{Tree, TreeError};

/// A directory a task sees: its guest path and its read-only base content.
pub type MountedTree = (String, Arc<Tree>);

/// Why the files of a task could not be laid out.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A file's bytes were not among those given.
    #[error("{path}: blob {blob} is missing")]
    Missing {
        /// The file's path in its mount.
        path: String,
        /// The blob its manifest names.
        blob: BlobId,
    },
    /// A file's bytes are not the size its manifest names.
    #[error("{path}: {actual} bytes, not the {expected} its manifest says")]
    Size {
        /// The file's path in its mount.
        path: String,
        /// The size the manifest names.
        expected: u64,
        /// The size of the bytes given.
        actual: u64,
    },
    /// An entry the tree refused (a bad path, a duplicate, a bad link).
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// Two mounts at one guest path (the bundle's over its runtime's, or twice).
    #[error("{0} is mounted twice")]
    Overlap(String),
}

/// The read-only tree of `mount`, each file's bytes taken from `blobs`.
pub fn mount_tree(mount: &Mount, blobs: &HashMap<BlobId, Arc<[u8]>>) -> Result<Tree, LayoutError> {
    let mut tree = Tree::new();
    for e in &mount.entries {
        match &e.kind {
            EntryKind::Dir => tree.insert_dir(&e.path)?,
            EntryKind::Symlink(target) => tree.insert_symlink(&e.path, target)?,
            EntryKind::File(f) => {
                let bytes = blobs.get(&f.blob).ok_or_else(|| LayoutError::Missing {
                    path: e.path.clone(),
                    blob: f.blob,
                })?;
                if bytes.len() as u64 != f.size {
                    return Err(LayoutError::Size {
                        path: e.path.clone(),
                        expected: f.size,
                        actual: bytes.len() as u64,
                    });
                }
                tree.insert_file(&e.path, bytes.clone())?;
            }
        }
    }
    Ok(tree)
}

/// The blob ids of the files of `mounts`, each once, in order of first use.
pub fn file_blobs(mounts: &[Mount]) -> Vec<BlobId> {
    let mut seen = std::collections::HashSet::new();
    mounts
        .iter()
        .flat_map(|m| &m.entries)
        .filter_map(|e| match &e.kind {
            EntryKind::File(f) => Some(f.blob),
            _ => None,
        })
        .filter(|b| seen.insert(*b))
        .collect()
}

/// A runtime as a task needs it: its manifest and its mounts' trees.
#[derive(Clone, Copy, Debug)]
pub struct RuntimeFiles<'a> {
    /// The runtime's signed manifest.
    pub manifest: &'a RuntimeManifest,
    /// Its mounts, as [`mount_tree`] built them, in the manifest's order.
    pub mounts: &'a [MountedTree],
}

/// What a task gets besides its module and its input.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Preopened directories, in the order the task sees them.
    pub mounts: Vec<MountedTree>,
    /// The environment.
    pub env: Vec<(String, String)>,
    /// `argv[0]`, when a runtime names one.
    pub argv0: Option<String>,
    /// The arguments after `argv[0]`.
    pub args: Vec<String>,
}

impl Layout {
    /// The layout of a task of a bundle with `mounts`, `env` and `args`,
    /// run by `runtime` with `program` (the bundle's module bytes) as its
    /// program, or run directly when there is no runtime.
    pub fn new(
        runtime: Option<(RuntimeFiles<'_>, Arc<[u8]>)>,
        mounts: Vec<MountedTree>,
        env: &[(String, String)],
        args: &[String],
    ) -> Result<Layout, LayoutError> {
        let mut out = Layout::default();
        let mut runtime_env: &[(String, String)] = &[];
        if let Some((rt, program)) = runtime {
            let m = rt.manifest;
            out.mounts.extend(rt.mounts.iter().cloned());
            let (dir, file) = m.program_mount();
            let mut tree = Tree::new();
            tree.insert_file(file, program)?;
            out.mounts.push((dir.to_string(), Arc::new(tree)));
            runtime_env = &m.env;
            out.argv0 = Some(m.argv0.clone());
            out.args.extend(m.args.iter().cloned());
            out.args.push(m.program.clone());
        }
        for (guest, tree) in mounts {
            if out.mounts.iter().any(|(g, _)| *g == guest) {
                return Err(LayoutError::Overlap(guest));
            }
            out.mounts.push((guest, tree));
        }
        out.env = chorus_sdk::files::canonical_env(
            runtime_env.iter().cloned().chain(env.iter().cloned()),
        );
        out.args.extend(args.iter().cloned());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use chorus_sdk::blob::BlobIndex;
    use chorus_sdk::files::{Entry, FileRef};

    use super::*;

    fn file(path: &str, bytes: &[u8], blobs: &mut HashMap<BlobId, Arc<[u8]>>) -> Entry {
        let blob = BlobIndex::of(bytes).unwrap().id();
        blobs.insert(blob, bytes.into());
        Entry {
            path: path.into(),
            kind: EntryKind::File(FileRef {
                blob,
                size: bytes.len() as u64,
            }),
        }
    }

    #[test]
    fn files_are_checked_against_their_manifest() {
        let mut blobs = HashMap::new();
        let mut mount = Mount {
            guest: "/data".into(),
            entries: vec![
                Entry {
                    path: "d".into(),
                    kind: EntryKind::Dir,
                },
                file("d/a", b"alpha", &mut blobs),
                Entry {
                    path: "l".into(),
                    kind: EntryKind::Symlink("d/a".into()),
                },
            ],
        };
        mount_tree(&mount, &blobs).unwrap();
        assert_eq!(file_blobs(std::slice::from_ref(&mount)).len(), 1);

        // The size the manifest names is what counts.
        if let EntryKind::File(f) = &mut mount.entries[1].kind {
            f.size = 4;
        }
        assert!(matches!(
            mount_tree(&mount, &blobs),
            Err(LayoutError::Size {
                expected: 4,
                actual: 5,
                ..
            })
        ));
        // A blob not given is named.
        assert!(matches!(
            mount_tree(&mount, &HashMap::new()),
            Err(LayoutError::Missing { path, .. }) if path == "d/a"
        ));
    }

    #[test]
    fn a_runtime_comes_first_and_the_bundle_may_not_mount_over_it() {
        let manifest = RuntimeManifest {
            format: chorus_sdk::runtime::RUNTIME_FORMAT,
            name: "python".into(),
            version: "test".into(),
            module: FileRef {
                blob: BlobId([0; 32]),
                size: 0,
            },
            mounts: Vec::new(),
            env: vec![
                ("A".into(), "runtime".into()),
                ("B".into(), "runtime".into()),
            ],
            argv0: "python".into(),
            args: vec!["-I".into()],
            program: "/app/main.py".into(),
            limits: Default::default(),
            publisher: [0; 32],
        };
        let rt_mounts = vec![("/".to_string(), Arc::new(Tree::new()))];
        let rt = RuntimeFiles {
            manifest: &manifest,
            mounts: &rt_mounts,
        };
        let data = ("/data".to_string(), Arc::new(Tree::new()));
        let l = Layout::new(
            Some((rt, b"print(1)".as_slice().into())),
            vec![data.clone()],
            &[("B".into(), "bundle".into())],
            &["x".into()],
        )
        .unwrap();
        let guests: Vec<&str> = l.mounts.iter().map(|(g, _)| g.as_str()).collect();
        assert_eq!(guests, ["/", "/app", "/data"]);
        assert_eq!(l.argv0.as_deref(), Some("python"));
        assert_eq!(l.args, ["-I", "/app/main.py", "x"]);
        assert_eq!(
            l.env,
            [
                ("A".to_string(), "runtime".to_string()),
                ("B".to_string(), "bundle".to_string())
            ]
        );
        let over = ("/app".to_string(), Arc::new(Tree::new()));
        assert!(matches!(
            Layout::new(Some((rt, b"".as_slice().into())), vec![over], &[], &[]),
            Err(LayoutError::Overlap(g)) if g == "/app"
        ));
        // Without a runtime: the bundle's own, as given.
        let l = Layout::new(None, vec![data], &[], &["y".into()]).unwrap();
        assert_eq!(l.mounts.len(), 1);
        assert_eq!(l.argv0, None);
        assert_eq!(l.args, ["y"]);
    }
}
