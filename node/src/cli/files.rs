//! The `--dir HOST_DIR::GUEST_PATH` and `--env KEY=VALUE` flags of `chorus
//! run` and `chorus submit`: reading a host directory once, as the initial
//! content of a task's mount (never written back).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chorus_sdk::blob::{BlobId, BlobIndex};
use chorus_sdk::files::{self, Entry, EntryKind, FileRef, MAX_ENTRIES, MAX_FILES_BYTES, Mount};

/// One `--dir` flag: a host directory and where the task sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirArg {
    /// The host directory read as the initial content.
    pub host: PathBuf,
    /// The absolute guest path of the mount.
    pub guest: String,
}

/// Parses `HOST_DIR::GUEST_PATH` (the `wasmtime` CLI's syntax); a bare
/// `HOST_DIR` is mounted at the same path when absolute.
pub fn parse_dir(s: &str) -> Result<DirArg, String> {
    let (host, guest) = match s.split_once("::") {
        Some((h, g)) => (h, g.to_string()),
        None => (s, s.to_string()),
    };
    if host.is_empty() {
        return Err(format!("{s:?}: the host directory is empty"));
    }
    let guest = normalize_guest(&guest)
        .ok_or_else(|| format!("{s:?}: the guest path must be absolute, like /data"))?;
    Ok(DirArg {
        host: PathBuf::from(host),
        guest,
    })
}

/// `/a/b/` as `/a/b`; `None` when not an absolute path of normal segments.
fn normalize_guest(g: &str) -> Option<String> {
    let trimmed = g.trim_end_matches('/');
    let g = if trimmed.is_empty() && g.starts_with('/') {
        "/"
    } else {
        trimmed
    };
    files::is_mount_point(g).then(|| g.to_string())
}

/// Parses `KEY=VALUE`.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    files::parse_env(s).map_err(|e| e.to_string())
}

/// What one entry of a host directory is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// A directory.
    Dir,
    /// A regular file, by its host path and size.
    File(PathBuf, u64),
    /// A symbolic link, by its target as written (never followed on the host).
    Symlink(String),
}

/// A host directory, walked once: entries by relative path, sorted.
#[derive(Clone, Debug)]
pub struct HostTree {
    /// Where the task sees it.
    pub guest: String,
    /// Entries by `/`-separated relative path, sorted, without the root.
    pub entries: Vec<(String, HostKind)>,
}

impl HostTree {
    /// Walks `dir.host`: directories, regular files and symbolic links (kept
    /// as links, never followed). Anything else (sockets, devices), a name
    /// that is not UTF-8, or more than the bounds is an error.
    pub fn read(dir: &DirArg) -> anyhow::Result<HostTree> {
        let root = &dir.host;
        let meta = std::fs::metadata(root)
            .with_context(|| format!("--dir {}: cannot read it", root.display()))?;
        if !meta.is_dir() {
            bail!("--dir {}: not a directory", root.display());
        }
        let mut entries = Vec::new();
        let mut bytes = 0u64;
        let walk = walkdir::WalkDir::new(root)
            .follow_links(false)
            .min_depth(1)
            .sort_by(|a, b| a.file_name().cmp(b.file_name()));
        for e in walk {
            let e = e.with_context(|| format!("--dir {}: cannot walk it", root.display()))?;
            let rel = relative(root, e.path())?;
            let ft = e.file_type();
            let kind = if ft.is_dir() {
                HostKind::Dir
            } else if ft.is_file() {
                let size = e
                    .metadata()
                    .with_context(|| format!("cannot stat {}", e.path().display()))?
                    .len();
                bytes = bytes.saturating_add(size);
                HostKind::File(e.path().to_path_buf(), size)
            } else if ft.is_symlink() {
                let target = std::fs::read_link(e.path())
                    .with_context(|| format!("cannot read link {}", e.path().display()))?;
                let target = target
                    .to_str()
                    .with_context(|| format!("{}: link target is not UTF-8", e.path().display()))?
                    .to_string();
                HostKind::Symlink(target)
            } else {
                bail!(
                    "{}: not a file, directory or link (sockets and devices cannot be mounted)",
                    e.path().display()
                );
            };
            entries.push((rel, kind));
            if entries.len() > MAX_ENTRIES {
                bail!("--dir {}: more than {MAX_ENTRIES} entries", root.display());
            }
        }
        if bytes > MAX_FILES_BYTES {
            bail!(
                "--dir {}: {bytes} bytes of files, at most {MAX_FILES_BYTES}",
                root.display()
            );
        }
        // walkdir sorts siblings; the canonical order is by whole path bytes.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(HostTree {
            guest: dir.guest.clone(),
            entries,
        })
    }

    /// The mount a bundle names (each file by the blob id of its bytes), and
    /// the files to upload by id.
    pub fn to_mount(&self) -> anyhow::Result<(Mount, Vec<(BlobId, PathBuf)>)> {
        let mut entries = Vec::with_capacity(self.entries.len());
        let mut blobs = Vec::new();
        for (path, kind) in &self.entries {
            let kind = match kind {
                HostKind::Dir => EntryKind::Dir,
                HostKind::Symlink(t) => EntryKind::Symlink(t.clone()),
                HostKind::File(host, _) => {
                    let f = std::fs::File::open(host)
                        .with_context(|| format!("cannot read {}", host.display()))?;
                    let index = BlobIndex::read_from(std::io::BufReader::new(f))
                        .with_context(|| format!("{}: cannot make it a blob", host.display()))?;
                    blobs.push((index.id(), host.clone()));
                    EntryKind::File(FileRef {
                        blob: index.id(),
                        size: index.size(),
                    })
                }
            };
            entries.push(Entry {
                path: path.clone(),
                kind,
            });
        }
        Ok((
            Mount {
                guest: self.guest.clone(),
                entries,
            },
            blobs,
        ))
    }

    /// Reads every file: the tree as the sandbox mounts it.
    pub fn load(&self) -> anyhow::Result<chorus_wasi::Tree> {
        let mut tree = chorus_wasi::Tree::new();
        for (path, kind) in &self.entries {
            match kind {
                HostKind::Dir => tree.insert_dir(path),
                HostKind::File(host, _) => {
                    let bytes = std::fs::read(host)
                        .with_context(|| format!("cannot read {}", host.display()))?;
                    tree.insert_file(path, bytes)
                }
                HostKind::Symlink(t) => tree.insert_symlink(path, t),
            }
            .with_context(|| format!("{path}: cannot mount it"))?;
        }
        Ok(tree)
    }
}

fn relative(root: &Path, p: &Path) -> anyhow::Result<String> {
    let rel = p
        .strip_prefix(root)
        .with_context(|| format!("{} is outside {}", p.display(), root.display()))?;
    let mut out = String::new();
    for c in rel.components() {
        let s = c
            .as_os_str()
            .to_str()
            .with_context(|| format!("{}: the name is not UTF-8", p.display()))?;
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(s);
    }
    if !files::is_relative_path(&out) {
        bail!("{}: not a path a task can see", p.display());
    }
    Ok(out)
}

/// Uploads the files a job names to `node` in verified chunks (what the
/// node already holds is not sent again), checking each is the blob the
/// bundle names.
pub async fn upload(node: std::net::SocketAddr, blobs: &[(BlobId, PathBuf)]) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (id, path) in blobs {
        if !seen.insert(*id) {
            continue;
        }
        let (index, _) = super::blob::upload(node, path).await?;
        if index.id() != *id {
            bail!(
                "{} changed since it was read (its blob is now {})",
                path.display(),
                index.id()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_flags_parse_like_wasmtime() {
        assert_eq!(
            parse_dir("data::/in").unwrap(),
            DirArg {
                host: "data".into(),
                guest: "/in".into()
            }
        );
        assert_eq!(parse_dir("/srv/x").unwrap().guest, "/srv/x");
        assert_eq!(parse_dir("d::/").unwrap().guest, "/");
        assert_eq!(parse_dir("d::/a/").unwrap().guest, "/a");
        assert!(parse_dir("d::rel").is_err());
        assert!(parse_dir("d::/a/../b").is_err());
        assert!(parse_dir("::/a").is_err());
        assert!(parse_env("A=1").is_ok());
        assert!(parse_env("A").is_err());
    }
}
