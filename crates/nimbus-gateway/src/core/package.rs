//! Deployment packages checked when they are uploaded, so a package that cannot run is
//! refused by `CreateFunction`/`UpdateFunctionCode` with Lambda's error, not at the
//! first invoke: not a zip, no files, an entry that would land outside the package
//! (zip-slip), a symbolic link that points outside it, or more than Lambda's unzipped
//! size. Only the zip's directory and the (tiny) link targets are read; the worker
//! unpacks it later, into a directory of its own, with the same rules enforced again.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use nimbus_types::limits::CODE_UNZIPPED_MAX_BYTES;

use super::error::ApiError;

/// Longest symbolic-link target read (a path, not content).
const LINK_TARGET_MAX: u64 = 4096;

/// Lambda's message for a package it cannot open.
pub const NOT_A_ZIP: &str =
    "Could not unzip uploaded file. Please check your file, then try to upload again.";

/// Checks a zip deployment package; returns its unzipped size.
pub fn check(zip: &[u8]) -> Result<u64, ApiError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|_| ApiError::invalid(NOT_A_ZIP))?;
    let mut files = 0usize;
    let mut unzipped = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|_| ApiError::invalid(NOT_A_ZIP))?;
        let name = entry
            .name()
            .map_err(|_| ApiError::invalid(NOT_A_ZIP))?
            .into_owned();
        // The zip crate takes a leading `/` as relative; an absolute name is refused
        // here all the same, as an attempt to write outside the package.
        let absolute = name.starts_with(['/', '\\']);
        let Some(path) = entry.enclosed_name().filter(|_| !absolute) else {
            return Err(ApiError::invalid(format!(
                "{NOT_A_ZIP} The entry '{name}' would be written outside the package."
            )));
        };
        unzipped = unzipped.saturating_add(entry.size());
        if entry.is_symlink() {
            let mut target = String::new();
            (&mut entry)
                .take(LINK_TARGET_MAX)
                .read_to_string(&mut target)
                .map_err(|_| ApiError::invalid(NOT_A_ZIP))?;
            if escapes(&path, Path::new(&target)) {
                return Err(ApiError::invalid(format!(
                    "{NOT_A_ZIP} The symbolic link '{name}' points outside the package."
                )));
            }
            files += 1;
        } else if entry.is_file() {
            files += 1;
        }
    }
    if files == 0 {
        return Err(ApiError::invalid("Uploaded file must be a non-empty zip"));
    }
    if unzipped > CODE_UNZIPPED_MAX_BYTES {
        return Err(ApiError::invalid(format!(
            "Unzipped size must be smaller than {CODE_UNZIPPED_MAX_BYTES} bytes"
        )));
    }
    Ok(unzipped)
}

/// Whether a link at `link` (relative to the package root) to `target` leaves the root.
fn escapes(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    let mut at: PathBuf = link.parent().map(Path::to_path_buf).unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(p) => at.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !at.pop() {
                    return true;
                }
            }
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;

    fn zip_with(build: impl FnOnce(&mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>)) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        build(&mut w);
        w.finish().unwrap().into_inner()
    }

    fn file(w: &mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>, name: &str, body: &[u8]) {
        w.start_file(name, SimpleFileOptions::default()).unwrap();
        w.write_all(body).unwrap();
    }

    #[test]
    fn a_package_with_files_and_inner_links_is_accepted() {
        let zip = zip_with(|w| {
            file(w, "app.py", b"def handler(e, c): return 1\n");
            w.add_directory("lib/", SimpleFileOptions::default())
                .unwrap();
            file(w, "lib/util.py", b"x = 1\n");
            w.add_symlink("lib/app.py", "../app.py", SimpleFileOptions::default())
                .unwrap();
        });
        assert_eq!(check(&zip).unwrap(), 28 + 6 + 9);
    }

    #[test]
    fn what_cannot_run_is_refused_with_lambdas_error() {
        let expect = |zip: &[u8], needle: &str| {
            let e = check(zip).unwrap_err();
            assert_eq!(
                (e.status, e.error_type.as_str()),
                (400, "InvalidParameterValueException")
            );
            assert!(e.message.contains(needle), "{needle:?} in {}", e.message);
        };
        expect(b"not a zip", "Could not unzip");
        expect(&zip_with(|_| {}), "non-empty zip");
        expect(
            &zip_with(|w| {
                w.add_directory("only-a-dir/", SimpleFileOptions::default())
                    .unwrap();
            }),
            "non-empty zip",
        );
        expect(
            &zip_with(|w| file(w, "../../etc/cron.d/x", b"evil")),
            "outside the package",
        );
        expect(
            &zip_with(|w| file(w, "/etc/passwd", b"evil")),
            "outside the package",
        );
        for target in ["/etc/shadow", "../../../etc", "a/../../x"] {
            expect(
                &zip_with(|w| {
                    file(w, "app.py", b"");
                    w.add_symlink("link", target, SimpleFileOptions::default())
                        .unwrap();
                }),
                "symbolic link 'link' points outside",
            );
        }
    }

    #[test]
    fn link_targets_are_resolved_from_the_links_directory() {
        assert!(!escapes(Path::new("a/b/l"), Path::new("../c")));
        assert!(!escapes(Path::new("a/l"), Path::new("../c")));
        assert!(escapes(Path::new("l"), Path::new("../c")));
        assert!(escapes(Path::new("a/l"), Path::new("/c")));
    }
}
