//! The in-memory copy-on-write filesystem: an arena of nodes (inodes) built
//! from the preopens' base [`Tree`]s, path resolution confined to a directory,
//! and the scratch account of what the task added.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::abi::errno;
use crate::tree::{BaseNode, Tree};
use crate::{FIXED_WALL_CLOCK_NS, Fail, R, Stop};

/// Index of a node in the arena.
pub(crate) type NodeId = usize;

/// Scratch bytes each node the task creates or changes costs beyond its payload.
pub(crate) const NODE_COST: u64 = 64;
/// Most symbolic links followed in one resolution before `ELOOP`.
const MAX_HOPS: u32 = 40;
/// Largest file size (4 GiB): a bound on host memory independent of the
/// scratch cap. Past it a write is `EFBIG`.
pub(crate) const MAX_FILE_SIZE: u64 = 1 << 32;

/// A file's bytes: shared with the base tree until the first change.
pub(crate) enum Bytes {
    Base(Arc<[u8]>),
    Own(Vec<u8>),
}

impl Bytes {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Base(b) => b,
            Bytes::Own(v) => v,
        }
    }
}

/// A directory: entries in byte order of names.
pub(crate) struct Dir {
    pub(crate) entries: BTreeMap<Vec<u8>, NodeId>,
    /// The directory holding this one (itself for a preopen root).
    pub(crate) parent: NodeId,
    /// Sum of the entries' name lengths (the directory's scratch payload).
    pub(crate) names_len: u64,
}

pub(crate) enum Kind {
    File(Bytes),
    Dir(Dir),
    Symlink(Vec<u8>),
}

pub(crate) struct Node {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) atim: u64,
    pub(crate) mtim: u64,
    /// Directory entries naming this node (for a directory: 1 while linked, 0 once removed).
    pub(crate) links: u64,
    /// Open descriptors on this node.
    pub(crate) opens: u64,
    /// Whether the task created or changed it: only then does it cost scratch.
    pub(crate) touched: bool,
    pub(crate) kind: Kind,
}

impl Node {
    fn payload(&self) -> u64 {
        match &self.kind {
            Kind::File(b) => b.as_slice().len() as u64,
            Kind::Dir(d) => d.names_len,
            Kind::Symlink(t) => t.len() as u64,
        }
    }

    fn charge(&self) -> u64 {
        if self.touched {
            NODE_COST + self.payload()
        } else {
            0
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    pub(crate) fn dir(&self) -> Option<&Dir> {
        match &self.kind {
            Kind::Dir(d) => Some(d),
            _ => None,
        }
    }
}

/// What the last component of a path names, for calls that create or remove it.
pub(crate) struct Parent {
    /// The directory that holds (or will hold) the last component.
    pub(crate) dir: NodeId,
    /// The last component; may be `.` or `..`, which each call refuses its own way.
    pub(crate) name: Vec<u8>,
    /// Whether the path ended in `/`.
    pub(crate) slash: bool,
}

impl Parent {
    pub(crate) fn is_dot(&self) -> bool {
        self.name == b"." || self.name == b".."
    }
}

/// The arena of every node of every preopen.
pub(crate) struct Fs {
    nodes: Vec<Option<Node>>,
    free: Vec<NodeId>,
    /// Scratch bytes in use (sum of `charge` over live nodes).
    used: u64,
    cap: u64,
    /// Nodes created so far: part of a created node's inode number.
    serial: u64,
}

/// Inode number: the first 8 bytes of SHA-256 over what identifies a node.
fn ino_hash(parts: &[&[u8]]) -> u64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"chorus-wasi inode\0");
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    let d = ctx.finish();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_le_bytes(b)
}

impl Fs {
    pub(crate) fn new(cap: u64) -> Self {
        Fs {
            nodes: Vec::new(),
            free: Vec::new(),
            used: 0,
            cap,
            serial: 0,
        }
    }

    /// Scratch bytes the task has added so far.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    fn push(&mut self, node: Node) -> NodeId {
        match self.free.pop() {
            Some(id) => {
                self.nodes[id] = Some(node);
                id
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        }
    }

    /// Builds the nodes of preopen `index` from its base tree; returns the root.
    pub(crate) fn mount(&mut self, index: usize, tree: &Tree) -> NodeId {
        let dev = index as u64 + 1;
        let idx = (index as u64).to_le_bytes();
        let base = |kind, path: &str| Node {
            dev,
            ino: ino_hash(&[b"base", &idx, path.as_bytes()]),
            atim: FIXED_WALL_CLOCK_NS,
            mtim: FIXED_WALL_CLOCK_NS,
            links: 1,
            opens: 0,
            touched: false,
            kind,
        };
        let root = self.push(base(
            Kind::Dir(Dir {
                entries: BTreeMap::new(),
                parent: 0,
                names_len: 0,
            }),
            "",
        ));
        if let Some(Kind::Dir(d)) = self.nodes[root].as_mut().map(|n| &mut n.kind) {
            d.parent = root;
        }
        // Paths sort parent first (a parent is a prefix of its children).
        let mut ids: HashMap<&str, NodeId> = HashMap::new();
        for (path, node) in tree.iter() {
            let (parent_path, name) = match path.rfind('/') {
                Some(i) => (&path[..i], &path[i + 1..]),
                None => ("", path),
            };
            let parent = if parent_path.is_empty() {
                root
            } else {
                match ids.get(parent_path) {
                    Some(&p) => p,
                    None => continue, // cannot happen: the tree is complete
                }
            };
            let kind = match node {
                BaseNode::File(b) => Kind::File(Bytes::Base(b.clone())),
                BaseNode::Dir => Kind::Dir(Dir {
                    entries: BTreeMap::new(),
                    parent,
                    names_len: 0,
                }),
                BaseNode::Symlink(t) => Kind::Symlink(t.as_bytes().to_vec()),
            };
            let id = self.push(base(kind, path));
            ids.insert(path, id);
            if let Some(Kind::Dir(d)) = self.nodes[parent].as_mut().map(|n| &mut n.kind) {
                d.entries.insert(name.as_bytes().to_vec(), id);
                d.names_len += name.len() as u64;
            }
        }
        root
    }

    pub(crate) fn get(&self, id: NodeId) -> &Node {
        // Ids held by descriptors and directories always name live nodes.
        match self.nodes.get(id).and_then(Option::as_ref) {
            Some(n) => n,
            None => unreachable!("dangling node id {id}"),
        }
    }

    pub(crate) fn get_mut(&mut self, id: NodeId) -> &mut Node {
        match self.nodes.get_mut(id).and_then(Option::as_mut) {
            Some(n) => n,
            None => unreachable!("dangling node id {id}"),
        }
    }

    /// Accounts for node `id`'s payload becoming `new_payload` (the caller then
    /// makes it so). Growing, or changing content, marks the node touched; a
    /// shrink of an untouched directory (a base entry removed) costs nothing.
    /// `ScratchLimit` if the total would pass the cap; then nothing changed.
    pub(crate) fn recharge(&mut self, id: NodeId, new_payload: u64, content: bool) -> R<()> {
        let n = self.get(id);
        let old = n.charge();
        let touched = n.touched || content || new_payload > n.payload();
        let new = if touched { NODE_COST + new_payload } else { 0 };
        let total = self.used - old + new;
        if total > self.cap {
            return Err(Fail::Stop(Stop::ScratchLimit));
        }
        self.used = total;
        self.get_mut(id).touched = touched;
        Ok(())
    }

    /// Creates a node of `kind` in `dir` (whose device it takes), charging it.
    pub(crate) fn create(&mut self, dir: NodeId, name: &[u8], kind: Kind) -> R<NodeId> {
        let (dev, dir_ino) = {
            let d = self.get(dir);
            (d.dev, d.ino)
        };
        let payload = match &kind {
            Kind::File(b) => b.as_slice().len() as u64,
            Kind::Dir(d) => d.names_len,
            Kind::Symlink(t) => t.len() as u64,
        };
        let cost = NODE_COST + payload + self.link_delta(dir, name.len() as u64);
        if self.used + cost > self.cap {
            return Err(Fail::Stop(Stop::ScratchLimit));
        }
        // Within the cap, checked above with the node's own cost.
        self.link(dir, name, None)?;
        self.used += NODE_COST + payload;
        self.serial += 1;
        let ino = ino_hash(&[
            b"created",
            &dev.to_le_bytes(),
            &dir_ino.to_le_bytes(),
            name,
            &self.serial.to_le_bytes(),
        ]);
        let id = self.push(Node {
            dev,
            ino,
            atim: FIXED_WALL_CLOCK_NS,
            mtim: FIXED_WALL_CLOCK_NS,
            links: 1,
            opens: 0,
            touched: true,
            kind,
        });
        self.set_entry(dir, name, id);
        Ok(id)
    }

    /// How much more directory `dir` costs with `add` more bytes of names.
    fn link_delta(&self, dir: NodeId, add: u64) -> u64 {
        let n = self.get(dir);
        NODE_COST + n.payload() + add - n.charge()
    }

    /// Charges a new entry `name` in `dir`; with `Some(id)` also inserts it.
    pub(crate) fn link(&mut self, dir: NodeId, name: &[u8], id: Option<NodeId>) -> R<()> {
        let names_len = match self.get(dir).dir() {
            Some(d) => d.names_len,
            None => return Err(Fail::Errno(errno::NOTDIR)),
        };
        self.recharge(dir, names_len + name.len() as u64, true)?;
        if let Kind::Dir(d) = &mut self.get_mut(dir).kind {
            d.names_len += name.len() as u64;
        }
        if let Some(id) = id {
            self.set_entry(dir, name, id);
        }
        Ok(())
    }

    /// Points entry `name` of `dir` at `id`, returning what it named before.
    /// The directory's names (and so its charge) do not change.
    pub(crate) fn replace_entry(&mut self, dir: NodeId, name: &[u8], id: NodeId) -> Option<NodeId> {
        match &mut self.get_mut(dir).kind {
            Kind::Dir(d) => d.entries.insert(name.to_vec(), id),
            _ => None,
        }
    }

    fn set_entry(&mut self, dir: NodeId, name: &[u8], id: NodeId) {
        if let Kind::Dir(d) = &mut self.get_mut(dir).kind {
            d.entries.insert(name.to_vec(), id);
        }
    }

    /// Removes entry `name` from `dir` (never stops: removal only shrinks) and
    /// returns the node it named, with one link fewer (freed if unreferenced).
    pub(crate) fn unlink(&mut self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        let (id, new_len) = {
            let d = self.get(dir).dir()?;
            (*d.entries.get(name)?, d.names_len - name.len() as u64)
        };
        // A shrink: it cannot pass the cap.
        let _ = self.recharge(dir, new_len, false);
        if let Kind::Dir(d) = &mut self.get_mut(dir).kind {
            d.entries.remove(name);
            d.names_len = new_len;
        }
        let n = self.get_mut(id);
        n.links = n.links.saturating_sub(1);
        self.maybe_free(id);
        Some(id)
    }

    /// Frees `id` once no entry and no descriptor refers to it.
    pub(crate) fn maybe_free(&mut self, id: NodeId) {
        let n = self.get(id);
        if n.links == 0 && n.opens == 0 {
            let charge = n.charge();
            self.used -= charge;
            self.nodes[id] = None;
            self.free.push(id);
        }
    }

    /// Replaces the contents of file `id` by `f(bytes)`, whose result has
    /// length `new_len` (checked first against the cap and [`MAX_FILE_SIZE`]).
    /// Returns the number of bytes the host copied (for work accounting).
    pub(crate) fn modify(
        &mut self,
        id: NodeId,
        new_len: u64,
        f: impl FnOnce(&mut Vec<u8>),
    ) -> R<u64> {
        if new_len > MAX_FILE_SIZE {
            return Err(Fail::Errno(errno::FBIG));
        }
        self.recharge(id, new_len, true)?;
        let node = self.get_mut(id);
        node.mtim = FIXED_WALL_CLOCK_NS;
        let mut copied = 0;
        if let Kind::File(bytes) = &mut node.kind {
            if let Bytes::Base(b) = bytes {
                copied = b.len() as u64;
                *bytes = Bytes::Own(b.to_vec());
            }
            if let Bytes::Own(v) = bytes {
                f(v);
                debug_assert_eq!(v.len() as u64, new_len);
            }
        }
        Ok(copied)
    }

    /// Resolves `path` from directory `start` to the node it names, following
    /// a symbolic link in the last component if `follow` (or if the path ends
    /// in `/`). Confined to `start`: absolute paths, `..` above it and links
    /// out of it are `ENOTCAPABLE`.
    pub(crate) fn resolve(&self, start: NodeId, path: &[u8], follow: bool) -> R<NodeId> {
        match self.walk(start, path, follow, false)? {
            Walked::Node(id) => Ok(id),
            Walked::Parent(_) => Err(Fail::Errno(errno::INVAL)),
        }
    }

    /// Resolves every component of `path` but the last (following links).
    pub(crate) fn resolve_parent(&self, start: NodeId, path: &[u8]) -> R<Parent> {
        match self.walk(start, path, false, true)? {
            Walked::Parent(p) => Ok(p),
            Walked::Node(_) => Err(Fail::Errno(errno::INVAL)),
        }
    }

    /// The entry `name` of directory `dir`.
    pub(crate) fn lookup(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        self.get(dir).dir()?.entries.get(name).copied()
    }

    fn walk(&self, start: NodeId, path: &[u8], follow: bool, parent_only: bool) -> R<Walked> {
        let (mut comps, mut slash) = split(path)?;
        let mut stack = vec![start];
        let mut hops = 0;
        while let Some(c) = comps.pop_front() {
            let last = comps.is_empty();
            let cur = *stack.last().unwrap_or(&start);
            if !self.get(cur).is_dir() {
                return Err(Fail::Errno(errno::NOTDIR));
            }
            if last && parent_only {
                return Ok(Walked::Parent(Parent {
                    dir: cur,
                    name: c,
                    slash,
                }));
            }
            if c == b"." {
                continue;
            }
            if c == b".." {
                if stack.len() == 1 {
                    return Err(Fail::Errno(errno::NOTCAPABLE));
                }
                stack.pop();
                continue;
            }
            let child = self.lookup(cur, &c).ok_or(Fail::Errno(errno::NOENT))?;
            if let Kind::Symlink(target) = &self.get(child).kind
                && (!last || follow || slash)
            {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(Fail::Errno(errno::LOOP));
                }
                let (tcomps, tslash) = split(target)?;
                if last {
                    slash |= tslash;
                }
                for t in tcomps.into_iter().rev() {
                    comps.push_front(t);
                }
                continue;
            }
            stack.push(child);
        }
        let id = *stack.last().unwrap_or(&start);
        if parent_only {
            // The path was only `.`-like components that resolved to a directory.
            return Ok(Walked::Parent(Parent {
                dir: id,
                name: b".".to_vec(),
                slash,
            }));
        }
        if slash && !self.get(id).is_dir() {
            return Err(Fail::Errno(errno::NOTDIR));
        }
        Ok(Walked::Node(id))
    }
}

enum Walked {
    Node(NodeId),
    Parent(Parent),
}

/// Splits a guest path into components and whether it ends in `/`.
/// Empty is `ENOENT`, absolute is `ENOTCAPABLE`, a NUL byte is `EINVAL`.
fn split(path: &[u8]) -> R<(VecDeque<Vec<u8>>, bool)> {
    if path.is_empty() {
        return Err(Fail::Errno(errno::NOENT));
    }
    if path[0] == b'/' {
        return Err(Fail::Errno(errno::NOTCAPABLE));
    }
    if path.contains(&0) {
        return Err(Fail::Errno(errno::INVAL));
    }
    let comps: VecDeque<Vec<u8>> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Ok((comps, path.ends_with(b"/")))
}
