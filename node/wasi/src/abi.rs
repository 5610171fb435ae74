//! The numbers of the WASI preview 1 ABI (`wasi_snapshot_preview1`, from the
//! witx definitions): error codes, flags, file types and struct layouts.

/// Error codes (`errno`) a call returns to the guest.
pub mod errno {
    /// No error occurred.
    pub const SUCCESS: u16 = 0;
    /// Argument list too long.
    pub const TOOBIG: u16 = 1;
    /// Permission denied.
    pub const ACCES: u16 = 2;
    /// Resource unavailable, or operation would block.
    pub const AGAIN: u16 = 6;
    /// Bad file descriptor.
    pub const BADF: u16 = 8;
    /// Device or resource busy.
    pub const BUSY: u16 = 10;
    /// File exists.
    pub const EXIST: u16 = 20;
    /// Bad address: a pointer or length outside guest memory.
    pub const FAULT: u16 = 21;
    /// File too large.
    pub const FBIG: u16 = 22;
    /// Illegal byte sequence (a path that is not UTF-8).
    pub const ILSEQ: u16 = 25;
    /// Invalid argument.
    pub const INVAL: u16 = 28;
    /// I/O error.
    pub const IO: u16 = 29;
    /// Is a directory.
    pub const ISDIR: u16 = 31;
    /// Too many levels of symbolic links.
    pub const LOOP: u16 = 32;
    /// File descriptor value too large: too many open descriptors.
    pub const MFILE: u16 = 33;
    /// Filename too long.
    pub const NAMETOOLONG: u16 = 37;
    /// No such file or directory.
    pub const NOENT: u16 = 44;
    /// Function not supported.
    pub const NOSYS: u16 = 52;
    /// Not a directory or a symbolic link to a directory.
    pub const NOTDIR: u16 = 54;
    /// Directory not empty.
    pub const NOTEMPTY: u16 = 55;
    /// Not a socket.
    pub const NOTSOCK: u16 = 57;
    /// Not supported.
    pub const NOTSUP: u16 = 58;
    /// Value too large to be stored in its data type.
    pub const OVERFLOW: u16 = 61;
    /// Operation not permitted.
    pub const PERM: u16 = 63;
    /// Invalid seek.
    pub const SPIPE: u16 = 70;
    /// Cross-device link.
    pub const XDEV: u16 = 75;
    /// Capabilities insufficient: the path leaves the directory it is resolved in.
    pub const NOTCAPABLE: u16 = 76;
}

/// File types (`filetype`).
pub mod filetype {
    /// Unknown: what the standard streams report, so that `isatty` is false.
    pub const UNKNOWN: u8 = 0;
    /// A character device.
    pub const CHARACTER_DEVICE: u8 = 2;
    /// A directory.
    pub const DIRECTORY: u8 = 3;
    /// A regular file.
    pub const REGULAR_FILE: u8 = 4;
    /// A symbolic link.
    pub const SYMBOLIC_LINK: u8 = 7;
}

/// Descriptor flags (`fdflags`).
pub mod fdflags {
    /// Writes append to the end of the file.
    pub const APPEND: u16 = 1;
    /// Synchronized data writes (a no-op in memory).
    pub const DSYNC: u16 = 2;
    /// Non-blocking mode (nothing here ever blocks).
    pub const NONBLOCK: u16 = 4;
    /// Synchronized reads (a no-op in memory).
    pub const RSYNC: u16 = 8;
    /// Synchronized writes (a no-op in memory).
    pub const SYNC: u16 = 16;
    /// Every defined flag.
    pub const ALL: u16 = 31;
}

/// Open flags (`oflags`) of `path_open`.
pub mod oflags {
    /// Create the file if it does not exist.
    pub const CREAT: u16 = 1;
    /// Fail unless the path is a directory.
    pub const DIRECTORY: u16 = 2;
    /// With `CREAT`, fail if the file exists.
    pub const EXCL: u16 = 4;
    /// Truncate the file to size 0.
    pub const TRUNC: u16 = 8;
}

/// Lookup flags: follow a symbolic link in the last path component.
pub const LOOKUPFLAGS_SYMLINK_FOLLOW: u32 = 1;

/// Flags of the `set_times` calls (`fstflags`).
pub mod fstflags {
    /// Set the access time to the given value.
    pub const ATIM: u16 = 1;
    /// Set the access time to "now" (the fixed wall clock).
    pub const ATIM_NOW: u16 = 2;
    /// Set the modification time to the given value.
    pub const MTIM: u16 = 4;
    /// Set the modification time to "now" (the fixed wall clock).
    pub const MTIM_NOW: u16 = 8;
}

/// Rights (`rights`), one bit each. Stored and reported; only `FD_READ` and
/// `FD_WRITE` gate calls, as in modern wasmtime.
pub mod rights {
    /// `fd_datasync`.
    pub const FD_DATASYNC: u64 = 1 << 0;
    /// `fd_read`, `fd_pread`.
    pub const FD_READ: u64 = 1 << 1;
    /// `fd_seek`.
    pub const FD_SEEK: u64 = 1 << 2;
    /// `fd_fdstat_set_flags`.
    pub const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
    /// `fd_sync`.
    pub const FD_SYNC: u64 = 1 << 4;
    /// `fd_tell`.
    pub const FD_TELL: u64 = 1 << 5;
    /// `fd_write`, `fd_pwrite`.
    pub const FD_WRITE: u64 = 1 << 6;
    /// `fd_advise`.
    pub const FD_ADVISE: u64 = 1 << 7;
    /// `fd_allocate`.
    pub const FD_ALLOCATE: u64 = 1 << 8;
    /// `path_create_directory`.
    pub const PATH_CREATE_DIRECTORY: u64 = 1 << 9;
    /// `path_open` with `CREAT`.
    pub const PATH_CREATE_FILE: u64 = 1 << 10;
    /// `path_link` source.
    pub const PATH_LINK_SOURCE: u64 = 1 << 11;
    /// `path_link` target.
    pub const PATH_LINK_TARGET: u64 = 1 << 12;
    /// `path_open`.
    pub const PATH_OPEN: u64 = 1 << 13;
    /// `fd_readdir`.
    pub const FD_READDIR: u64 = 1 << 14;
    /// `path_readlink`.
    pub const PATH_READLINK: u64 = 1 << 15;
    /// `path_rename` source.
    pub const PATH_RENAME_SOURCE: u64 = 1 << 16;
    /// `path_rename` target.
    pub const PATH_RENAME_TARGET: u64 = 1 << 17;
    /// `path_filestat_get`.
    pub const PATH_FILESTAT_GET: u64 = 1 << 18;
    /// `path_open` with `TRUNC`.
    pub const PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
    /// `path_filestat_set_times`.
    pub const PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
    /// `fd_filestat_get`.
    pub const FD_FILESTAT_GET: u64 = 1 << 21;
    /// `fd_filestat_set_size`.
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    /// `fd_filestat_set_times`.
    pub const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
    /// `path_symlink`.
    pub const PATH_SYMLINK: u64 = 1 << 24;
    /// `path_remove_directory`.
    pub const PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
    /// `path_unlink_file`.
    pub const PATH_UNLINK_FILE: u64 = 1 << 26;
    /// `poll_oneoff` on the descriptor.
    pub const POLL_FD_READWRITE: u64 = 1 << 27;
    /// `sock_shutdown`.
    pub const SOCK_SHUTDOWN: u64 = 1 << 28;
    /// `sock_accept`.
    pub const SOCK_ACCEPT: u64 = 1 << 29;
    /// The rights a regular file descriptor can hold.
    pub const FILE: u64 = FD_DATASYNC
        | FD_READ
        | FD_SEEK
        | FD_FDSTAT_SET_FLAGS
        | FD_SYNC
        | FD_TELL
        | FD_WRITE
        | FD_ADVISE
        | FD_ALLOCATE
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_SIZE
        | FD_FILESTAT_SET_TIMES
        | POLL_FD_READWRITE;
    /// The rights a directory descriptor can hold (no `FD_FILESTAT_SET_SIZE`).
    pub const DIR: u64 = FD_FDSTAT_SET_FLAGS
        | FD_SYNC
        | FD_DATASYNC
        | PATH_CREATE_DIRECTORY
        | PATH_CREATE_FILE
        | PATH_LINK_SOURCE
        | PATH_LINK_TARGET
        | PATH_OPEN
        | FD_READDIR
        | PATH_READLINK
        | PATH_RENAME_SOURCE
        | PATH_RENAME_TARGET
        | PATH_FILESTAT_GET
        | PATH_FILESTAT_SET_SIZE
        | PATH_FILESTAT_SET_TIMES
        | FD_FILESTAT_GET
        | FD_FILESTAT_SET_TIMES
        | PATH_SYMLINK
        | PATH_REMOVE_DIRECTORY
        | PATH_UNLINK_FILE;
    /// The rights of standard input.
    pub const STDIN: u64 = FD_READ | FD_FDSTAT_SET_FLAGS | FD_FILESTAT_GET | POLL_FD_READWRITE;
    /// The rights of standard output and error.
    pub const STDOUT: u64 = FD_WRITE | FD_FDSTAT_SET_FLAGS | FD_FILESTAT_GET | POLL_FD_READWRITE;
}

/// Clock ids (`clockid`).
pub mod clockid {
    /// The wall clock.
    pub const REALTIME: u32 = 0;
    /// The monotonic clock.
    pub const MONOTONIC: u32 = 1;
    /// CPU time of the process.
    pub const PROCESS_CPUTIME_ID: u32 = 2;
    /// CPU time of the thread.
    pub const THREAD_CPUTIME_ID: u32 = 3;
}

/// Event and subscription types (`eventtype`).
pub mod eventtype {
    /// A clock timeout.
    pub const CLOCK: u8 = 0;
    /// A descriptor ready for reading.
    pub const FD_READ: u8 = 1;
    /// A descriptor ready for writing.
    pub const FD_WRITE: u8 = 2;
}

/// `eventrwflags`: the peer has hung up (standard input at end of input).
pub const EVENTRWFLAGS_HANGUP: u16 = 1;
/// `subclockflags`: the timeout is an absolute time of the clock.
pub const SUBCLOCKFLAGS_ABSTIME: u16 = 1;

/// Size of `filestat`: dev @0, ino @8, filetype @16, nlink @24, size @32,
/// atim @40, mtim @48, ctim @56.
pub const FILESTAT_SIZE: u32 = 64;
/// Size of `fdstat`: filetype @0, flags @2, rights base @8, inheriting @16.
pub const FDSTAT_SIZE: u32 = 24;
/// Size of a `dirent` header: d_next @0, d_ino @8, d_namlen @16, d_type @20.
pub const DIRENT_SIZE: u32 = 24;
/// Size of a `subscription`.
pub const SUBSCRIPTION_SIZE: u32 = 48;
/// Size of an `event`.
pub const EVENT_SIZE: u32 = 32;
/// Size of a `prestat`: tag @0 (0 = dir), name length @4.
pub const PRESTAT_SIZE: u32 = 8;
