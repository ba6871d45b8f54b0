//! Random access to the files of an image layout, whether a directory or a tar: a tar is
//! indexed once (names to data offsets, seeking past data) and entries are read in place.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::ExportError;

/// The largest JSON document (index, manifest, config) read into memory.
const MAX_JSON: u64 = 16 << 20;

pub(crate) enum Entry {
    File { offset: u64, size: u64 },
    Link(String),
}

/// An image layout directory or a tar archive.
pub(crate) enum Source {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        entries: HashMap<String, Entry>,
    },
}

impl Source {
    pub(crate) fn open(path: &Path) -> Result<Source, ExportError> {
        let io = |source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        };
        if std::fs::metadata(path).map_err(io)?.is_dir() {
            return Ok(Source::Dir(path.to_path_buf()));
        }
        let mut archive = tar::Archive::new(File::open(path).map_err(io)?);
        let mut entries = HashMap::new();
        for entry in archive.entries_with_seek().map_err(io)? {
            let entry = entry.map_err(|e| not_tar(path, &e))?;
            let raw = entry.path_bytes();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let Some(name) = normalize("", &name) else {
                continue;
            };
            let header = entry.header();
            let kind = header.entry_type();
            let record = if kind.is_file() {
                Entry::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry.link_name_bytes() else {
                    continue;
                };
                let target = String::from_utf8_lossy(&target).into_owned();
                // Symlinks are relative to their directory, hard links to the archive root.
                let base = if kind.is_symlink() {
                    name.rsplit_once('/').map_or("", |(dir, _)| dir)
                } else {
                    ""
                };
                match normalize(base, &target) {
                    Some(t) => Entry::Link(t),
                    None => continue,
                }
            } else {
                continue;
            };
            entries.insert(name, record);
        }
        Ok(Source::Tar {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The archive or directory path, for messages.
    pub(crate) fn path(&self) -> &Path {
        match self {
            Source::Dir(p) | Source::Tar { path: p, .. } => p,
        }
    }

    /// Whether `name` is a file of the layout.
    pub(crate) fn has(&self, name: &str) -> bool {
        match self {
            Source::Dir(root) => normalize("", name).is_some_and(|n| root.join(n).is_file()),
            Source::Tar { .. } => self.locate(name).is_some(),
        }
    }

    fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let Source::Tar { entries, .. } = self else {
            return None;
        };
        let mut name = normalize("", name)?;
        // Follow links a few hops (docker save links duplicate layers); more is a loop.
        for _ in 0..8 {
            match entries.get(&name)? {
                Entry::File { offset, size } => return Some((*offset, *size)),
                Entry::Link(target) => name = target.clone(),
            }
        }
        None
    }

    /// Opens file `name`: a reader and its size. A missing file is an error naming it.
    pub(crate) fn open_file(&self, name: &str) -> Result<(Box<dyn Read>, u64), ExportError> {
        let missing = || ExportError::InvalidArchive {
            path: self.path().to_path_buf(),
            reason: format!("{name} is missing"),
        };
        match self {
            Source::Dir(root) => {
                let path = root.join(normalize("", name).ok_or_else(missing)?);
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
                    Err(source) => return Err(ExportError::Io { path, source }),
                };
                let size = file
                    .metadata()
                    .map_err(|source| ExportError::Io {
                        path: path.clone(),
                        source,
                    })?
                    .len();
                Ok((Box::new(io::BufReader::new(file)), size))
            }
            Source::Tar { path, .. } => {
                let (offset, size) = self.locate(name).ok_or_else(missing)?;
                let io = |source| ExportError::Io {
                    path: path.clone(),
                    source,
                };
                let mut file = File::open(path).map_err(io)?;
                file.seek(SeekFrom::Start(offset)).map_err(io)?;
                Ok((Box::new(io::BufReader::new(file).take(size)), size))
            }
        }
    }

    /// Reads a small file (a JSON document) whole.
    pub(crate) fn read(&self, name: &str) -> Result<Vec<u8>, ExportError> {
        let (mut reader, size) = self.open_file(name)?;
        if size > MAX_JSON {
            return Err(ExportError::InvalidArchive {
                path: self.path().to_path_buf(),
                reason: format!("{name} has {size} bytes, more than any image metadata file"),
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        reader
            .read_to_end(&mut out)
            .map_err(|source| ExportError::Io {
                path: self.path().to_path_buf(),
                source,
            })?;
        Ok(out)
    }
}

fn not_tar(path: &Path, e: &io::Error) -> ExportError {
    // A tar error can quote header bytes verbatim (`numeric field did not have utf-8 text:
    // <bytes> when getting cksum for <bytes>`): its text is shown only when it is plain.
    let detail = e.to_string();
    let plain = detail.len() <= 120 && detail.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    ExportError::InvalidArchive {
        path: path.to_path_buf(),
        reason: format!(
            "not a tar archive, or a damaged one{}; import what `docker save`, `podman save` or `skopeo copy` wrote",
            if plain {
                format!(" ({detail})")
            } else {
                String::new()
            }
        ),
    }
}

/// `name` resolved against directory `base` inside the layout: `.` and empty parts dropped,
/// `..` applied; `None` for the root itself or a path that climbs out of it.
pub(crate) fn normalize(base: &str, name: &str) -> Option<String> {
    let mut parts: Vec<&str> = if name.starts_with('/') {
        Vec::new()
    } else {
        base.split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect()
    };
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn names_are_normalized_and_confined() {
        assert_eq!(
            normalize("", "./blobs/sha256/ab").unwrap(),
            "blobs/sha256/ab"
        );
        assert_eq!(normalize("", "/manifest.json").unwrap(), "manifest.json");
        assert_eq!(normalize("a/b", "../c/layer.tar").unwrap(), "a/c/layer.tar");
        assert_eq!(normalize("", "./"), None);
        assert_eq!(normalize("", "../etc/passwd"), None);
        assert_eq!(normalize("a", "../../x"), None);
    }
}
