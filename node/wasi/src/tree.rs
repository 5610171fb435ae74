//! The read-only base content of one preopened directory.

use std::collections::BTreeMap;
use std::sync::Arc;

/// One entry of a [`Tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseNode {
    /// A regular file; its bytes are shared with every task that reads them
    /// until a task writes, which copies them.
    File(Arc<[u8]>),
    /// A directory.
    Dir,
    /// A symbolic link with its target, as given (it may be absolute or climb
    /// out of the preopen: such a link fails with `ENOTCAPABLE` when followed).
    Symlink(String),
}

/// Why a path or an insertion was refused by [`Tree`]. Nothing was inserted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The path is empty, absolute, has an empty, `.` or `..` segment, or a NUL byte.
    #[error("invalid tree path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A parent of the path is a file or a symbolic link.
    #[error("a parent of {path:?} is not a directory")]
    ParentNotDir {
        /// The path as given.
        path: String,
    },
    /// Something other than a directory already is at the path (or a
    /// directory where a file or symlink was inserted).
    #[error("{path:?} already exists")]
    Exists {
        /// The path as given.
        path: String,
    },
    /// A symbolic link target contains a NUL byte or is empty.
    #[error("invalid symlink target for {path:?}")]
    InvalidTarget {
        /// The path of the link.
        path: String,
    },
}

/// The read-only base content of one preopen: canonical relative paths
/// (`a/b.txt`), sorted by bytes, each with its node. Parents are created as
/// directories when a child is inserted, so the tree is always complete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    nodes: BTreeMap<String, BaseNode>,
}

impl Tree {
    /// An empty tree (an empty directory).
    pub fn new() -> Self {
        Tree::default()
    }

    /// Inserts a file with `bytes` at `path` (parents created as directories).
    pub fn insert_file(
        &mut self,
        path: &str,
        bytes: impl Into<Arc<[u8]>>,
    ) -> Result<(), TreeError> {
        self.insert(path, BaseNode::File(bytes.into()))
    }

    /// Inserts a directory at `path`; inserting an existing directory is a no-op.
    pub fn insert_dir(&mut self, path: &str) -> Result<(), TreeError> {
        self.insert(path, BaseNode::Dir)
    }

    /// Inserts a symbolic link at `path` pointing to `target`.
    pub fn insert_symlink(&mut self, path: &str, target: &str) -> Result<(), TreeError> {
        if target.is_empty() || target.contains('\0') {
            return Err(TreeError::InvalidTarget { path: path.into() });
        }
        self.insert(path, BaseNode::Symlink(target.into()))
    }

    /// The node at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&BaseNode> {
        self.nodes.get(path)
    }

    /// Every node, in byte order of paths (a parent before its children).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BaseNode)> {
        self.nodes.iter().map(|(p, n)| (p.as_str(), n))
    }

    /// Number of nodes (not counting the root).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is an empty directory.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn insert(&mut self, path: &str, node: BaseNode) -> Result<(), TreeError> {
        validate(path)?;
        let mut end = 0;
        // Every proper prefix ending before a '/' must be (or become) a directory.
        while let Some(i) = path[end..].find('/') {
            let parent = &path[..end + i];
            match self.nodes.get(parent) {
                Some(BaseNode::Dir) | None => {}
                Some(_) => return Err(TreeError::ParentNotDir { path: path.into() }),
            }
            end += i + 1;
        }
        match (self.nodes.get(path), &node) {
            (None, _) => {}
            (Some(BaseNode::Dir), BaseNode::Dir) => return Ok(()),
            (Some(_), _) => return Err(TreeError::Exists { path: path.into() }),
        }
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            self.nodes
                .entry(path[..end + i].to_string())
                .or_insert(BaseNode::Dir);
            end += i + 1;
        }
        self.nodes.insert(path.to_string(), node);
        Ok(())
    }
}

fn validate(path: &str) -> Result<(), TreeError> {
    let bad = |reason| {
        Err(TreeError::InvalidPath {
            path: path.into(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.starts_with('/') {
        return bad("absolute");
    }
    if path.contains('\0') {
        return bad("contains NUL");
    }
    for seg in path.split('/') {
        match seg {
            "" => return bad("empty segment"),
            "." | ".." => return bad("`.` or `..` segment"),
            _ => {}
        }
    }
    Ok(())
}
