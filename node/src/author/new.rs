//! `chorus task new`: a ready task project from a template.
//!
//! The templates are files under `node/templates/{rust,c}/`, embedded in the
//! binary. `{{name}}` becomes the project's name (from its directory) and
//! `{{sdk}}` the absolute path of the guest SDK (Rust only).

use std::path::{Path, PathBuf};

use super::Lang;

/// Where the guest SDK of this build's repository lies (`task-sdk/`, next to
/// `node/`), before it is checked to exist.
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("task-sdk")
}

/// What `task new` is asked for.
#[derive(Debug, Clone)]
pub struct NewOptions {
    /// The template.
    pub lang: Lang,
    /// The guest SDK's directory (Rust); `None`: [`default_sdk`].
    pub sdk: Option<PathBuf>,
}

/// A project written by [`create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Its directory.
    pub dir: PathBuf,
    /// The package / module name.
    pub name: String,
    /// The files written, relative to `dir`.
    pub files: Vec<PathBuf>,
}

/// Why [`create`] wrote no project.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The directory exists and holds something; nothing was written.
    #[error("{0} is not empty: `chorus task new` writes only into a new or empty directory")]
    NotEmpty(PathBuf),
    /// The path exists and is not a directory; nothing was written.
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// The guest SDK is not where it was looked for; nothing was written.
    #[error(
        "the Chorus guest SDK is not at {0}: pass --sdk PATH (the task-sdk directory of a Chorus clone)"
    )]
    SdkMissing(PathBuf),
    /// A path that must go into the project's files is not UTF-8; nothing was written.
    #[error("{0} is not valid UTF-8, so it cannot be written into Cargo.toml")]
    NotUtf8(PathBuf),
    /// A file could not be written; the directory may hold part of the project.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// An embedded template is broken (a bug of this binary); the directory
    /// may hold part of the project.
    #[error("the {0} template is broken: {1}")]
    Template(Lang, String),
}

/// Writes a task project of `opts.lang` into `dir` (created if missing; it
/// must be empty).
pub fn create(dir: &Path, opts: &NewOptions) -> Result<Created, NewError> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Err(NewError::NotADirectory(dir.to_path_buf())),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dir).map_err(|source| NewError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            if entries.next().is_some() {
                return Err(NewError::NotEmpty(dir.to_path_buf()));
            }
        }
        Err(_) => {}
    }
    let sdk = match opts.lang {
        Lang::Rust => Some(sdk_path(opts.sdk.as_deref())?),
        Lang::C | Lang::Python => None,
    };
    std::fs::create_dir_all(dir).map_err(|source| NewError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let abs = dir.canonicalize().map_err(|source| NewError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let name = package_name(&abs);
    let files = files(opts.lang, &name, sdk.as_deref())?;
    let mut written = Vec::with_capacity(files.len());
    for (rel, bytes) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| NewError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, bytes).map_err(|source| NewError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(PathBuf::from(rel));
    }
    tracing::info!(dir = %abs.display(), %name, lang = %opts.lang, "wrote a task project");
    Ok(Created {
        dir: abs,
        name,
        files: written,
    })
}

/// The guest SDK's directory, canonical, checked to hold a Cargo.toml.
fn sdk_path(given: Option<&Path>) -> Result<PathBuf, NewError> {
    let wanted = given.map_or_else(default_sdk, Path::to_path_buf);
    let found = wanted
        .canonicalize()
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file());
    let Some(sdk) = found else {
        // `node/../task-sdk` reads better without the `..`.
        let shown = match (given, wanted.parent().and_then(Path::parent)) {
            (None, Some(repo)) => repo.join("task-sdk"),
            _ => wanted,
        };
        return Err(NewError::SdkMissing(shown));
    };
    if sdk.to_str().is_none() {
        return Err(NewError::NotUtf8(sdk));
    }
    Ok(sdk)
}

/// The files of a project: path relative to its directory, contents.
fn files(
    lang: Lang,
    name: &str,
    sdk: Option<&Path>,
) -> Result<Vec<(&'static str, Vec<u8>)>, NewError> {
    let sdk = sdk.and_then(Path::to_str).unwrap_or_default();
    let fill = |template: &str| -> Vec<u8> {
        template
            .replace("{{name}}", name)
            .replace("{{sdk}}", &toml_escape(sdk))
            .into_bytes()
    };
    Ok(match lang {
        Lang::Rust => vec![
            (
                "Cargo.toml",
                fill(include_str!("../../templates/rust/Cargo.toml")),
            ),
            (
                "src/main.rs",
                fill(include_str!("../../templates/rust/src/main.rs")),
            ),
            (
                "sample-input",
                json_to_msgpack(include_str!("../../templates/rust/sample-input.json"))
                    .map_err(|e| NewError::Template(lang, e))?,
            ),
            (
                "README.md",
                fill(include_str!("../../templates/rust/README.md")),
            ),
            (
                ".gitignore",
                fill(include_str!("../../templates/rust/gitignore")),
            ),
        ],
        Lang::C => vec![
            ("Makefile", fill(include_str!("../../templates/c/Makefile"))),
            (
                "src/main.c",
                fill(include_str!("../../templates/c/src/main.c")),
            ),
            (
                "sample-input",
                include_str!("../../templates/c/sample-input").into(),
            ),
            (
                "README.md",
                fill(include_str!("../../templates/c/README.md")),
            ),
            (
                ".gitignore",
                fill(include_str!("../../templates/c/gitignore")),
            ),
        ],
        Lang::Python => vec![
            (
                "main.py",
                fill(include_str!("../../templates/python/main.py")),
            ),
            (
                "sample-input",
                include_str!("../../templates/python/sample-input").into(),
            ),
            (
                "README.md",
                fill(include_str!("../../templates/python/README.md")),
            ),
            (
                ".gitignore",
                fill(include_str!("../../templates/python/gitignore")),
            ),
        ],
    })
}

/// A package name from the project's directory: lower case, `[a-z0-9_-]`,
/// starting with a letter, not a name Cargo refuses.
pub fn package_name(dir: &Path) -> String {
    let raw = dir.file_name().and_then(|n| n.to_str()).unwrap_or("task");
    let mut name: String = raw
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches(|c| c == '-' || c == '_').to_string();
    name.truncate(64);
    const RESERVED: &[&str] = &[
        "test",
        "std",
        "core",
        "alloc",
        "proc_macro",
        "proc-macro",
        "build",
        "deps",
        "examples",
        "incremental",
        "as",
        "async",
        "await",
        "break",
        "const",
        "continue",
        "crate",
        "dyn",
        "else",
        "enum",
        "extern",
        "false",
        "fn",
        "for",
        "gen",
        "if",
        "impl",
        "in",
        "let",
        "loop",
        "match",
        "mod",
        "move",
        "mut",
        "pub",
        "ref",
        "return",
        "self",
        "static",
        "struct",
        "super",
        "trait",
        "true",
        "type",
        "unsafe",
        "use",
        "where",
        "while",
    ];
    if name.is_empty() {
        "task".into()
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) || RESERVED.contains(&&*name) {
        format!("task-{name}")
    } else {
        name
    }
}

/// `s` inside a TOML basic string.
fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A JSON document as one MessagePack value (maps keep their keys).
fn json_to_msgpack(json: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_str(json);
    let mut ser = rmp_serde::Serializer::new(&mut out);
    serde_transcode::transcode(&mut de, &mut ser).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_directory() {
        assert_eq!(package_name(Path::new("/x/My Task")), "my-task");
        assert_eq!(package_name(Path::new("/x/primes_2")), "primes_2");
        assert_eq!(package_name(Path::new("/x/2d")), "task-2d");
        assert_eq!(package_name(Path::new("/x/test")), "task-test");
        assert_eq!(package_name(Path::new("/x/---")), "task");
        assert_eq!(package_name(Path::new("/")), "task");
    }

    #[test]
    fn the_rust_sample_input_is_messagepack() {
        let files = files(Lang::Rust, "t", Some(Path::new("/s\"dk"))).unwrap();
        let (_, sample) = files.iter().find(|(n, _)| *n == "sample-input").unwrap();
        #[derive(serde::Deserialize)]
        struct Input {
            values: Vec<i64>,
        }
        let input: Input = rmp_serde::from_slice(sample).unwrap();
        assert_eq!(input.values, [3, 1, 4, 1, 5, 9, 2, 6]);
        let (_, toml) = files.iter().find(|(n, _)| *n == "Cargo.toml").unwrap();
        let toml = std::str::from_utf8(toml).unwrap();
        assert!(toml.contains(r#"path = "/s\"dk""#), "{toml}");
        assert!(!toml.contains("{{"), "{toml}");
    }

    #[test]
    fn the_c_makefile_has_the_flags_the_build_uses() {
        let makefile = include_str!("../../templates/c/Makefile");
        for flag in super::super::build::C_FLAGS {
            assert!(makefile.contains(flag), "{flag}");
        }
    }
}
