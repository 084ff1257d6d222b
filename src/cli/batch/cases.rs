//! Finding the cases of a batch: DICOM series and volume files under a folder, each with
//! a name that is unique, stable across runs and safe as a file name; and shards.

use crate::error::{Error, Result};
use crate::io::dicom::{ScanOptions, Series};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Longest case name kept (characters) before the uniqueness suffix.
const MAX_NAME_CHARS: usize = 96;

/// Where a case's volume comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A DICOM series (its headers already read).
    Dicom(Box<Series>),
    /// A `.nrrd`, `.nhdr`, `.nii` or `.nii.gz` file.
    File(PathBuf),
}

/// One volume to label.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique among the cases of one input folder; used for the output file names.
    pub name: String,
    pub source: Source,
}

impl Case {
    /// The SeriesInstanceUID of a DICOM case, empty for files.
    pub fn series_uid(&self) -> &str {
        match &self.source {
            Source::Dicom(s) => &s.series_instance_uid,
            Source::File(_) => "",
        }
    }
}

/// What [`discover`] found.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Sorted by name.
    pub cases: Vec<Case>,
    /// Files that are neither part of a case nor a label map or segmentation: their path
    /// relative to the input folder, and why they were not used (not DICOM, a non-image
    /// DICOM object, unreadable).
    pub skipped: Vec<(String, String)>,
    /// Label maps and segmentations left out by name.
    pub label_files: usize,
}

/// Finds every case under `input` (recursively): each DICOM image series is a case, and
/// so is each volume file (`.nrrd`, `.nhdr`, `.nii`, `.nii.gz`) whose name does not say it
/// is a label map or segmentation (see [`is_label_name`]). Hidden files and folders
/// (starting with `.`) and the folders in `exclude` (the output folder) are not searched.
///
/// Names: a file's name without its extension; a DICOM series is named after its folder
/// relative to `input` (components joined by `_`; `input`'s own name when the files are
/// directly inside it), followed by its SeriesNumber and SeriesDescription when that
/// folder holds several series. Names are made safe ([`sanitize`]); names that still
/// collide get the relative path (files) and then `-2`, `-3`, ... in source order.
pub fn discover(input: &Path, exclude: &[PathBuf]) -> Result<Discovery> {
    let exclude: Vec<PathBuf> = exclude
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let mut files = Vec::new();
    walk(input, &exclude, &mut files)?;
    files.sort();

    let mut volumes = Vec::new();
    let mut others = Vec::new();
    let mut label_files = 0;
    for f in files {
        let name = file_name_lower(&f);
        if is_volume_name(&name) {
            if is_label_name(&name) {
                label_files += 1;
            } else {
                volumes.push(f);
            }
        } else {
            others.push(f);
        }
    }
    // The data files of detached headers (ct.nhdr + ct.raw.gz) are part of their volume.
    let detached: Vec<(PathBuf, String)> = volumes
        .iter()
        .filter(|v| file_name_lower(v).ends_with(".nhdr"))
        .map(|v| (v.with_extension(""), file_name_lower(&v.with_extension(""))))
        .collect();
    others.retain(|f| {
        !detached.iter().any(|(stem, stem_name)| {
            f.parent() == stem.parent() && file_name_lower(f).starts_with(&format!("{stem_name}."))
        })
    });

    let scan = if others.is_empty() {
        Default::default()
    } else {
        ScanOptions::new().recursive(false).scan(&others)?
    };
    let relative = |p: &Path| relative_display(input, p);
    let skipped = scan
        .skipped
        .iter()
        .map(|(p, why)| (relative(p), why.clone()))
        .collect();

    // (name, tie-break key, source)
    let mut named: Vec<(String, String, Source)> = Vec::new();
    let input_name = input
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "dicom".to_string());
    let folder_of = |s: &Series| common_folder(s.files.iter().map(|f| f.path.as_path()));
    let mut per_folder: HashMap<PathBuf, usize> = HashMap::new();
    for s in &scan.series {
        *per_folder.entry(folder_of(s)).or_default() += 1;
    }
    for s in scan.series {
        let folder = folder_of(&s);
        let rel: Vec<String> = folder
            .strip_prefix(input)
            .map(|r| {
                r.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let mut name = if rel.is_empty() {
            sanitize(&input_name)
        } else {
            sanitize(&rel.join("_"))
        };
        if per_folder.get(&folder).copied().unwrap_or(0) > 1 {
            let number = s
                .series_number
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into());
            name = sanitize(&format!("{name}_s{number}_{}", s.description));
            if let Some(split) = &s.split {
                name = sanitize(&format!("{name}_{split}"));
            }
        }
        let key = format!(
            "dicom:{}:{}",
            s.series_instance_uid,
            s.split.as_deref().unwrap_or("")
        );
        named.push((name, key, Source::Dicom(Box::new(s))));
    }

    // Files: the stem, or the relative path without extension when stems collide.
    let mut by_stem: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for v in volumes {
        by_stem.entry(sanitize(&stem(&v))).or_default().push(v);
    }
    for (stem_name, paths) in by_stem {
        let several = paths.len() > 1;
        for p in paths {
            let name = if several {
                let rel = relative(&p);
                sanitize(&strip_volume_extension(&rel).replace(['/', '\\'], "_"))
            } else {
                stem_name.clone()
            };
            named.push((name, format!("file:{}", p.display()), Source::File(p)));
        }
    }

    Ok(Discovery {
        cases: unique_names(named),
        skipped,
        label_files,
    })
}

fn walk(dir: &Path, exclude: &[PathBuf], out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut entries: Vec<_> = entries
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // A broken link or a file that vanished is not worth failing the batch for.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let excluded = path
                .canonicalize()
                .map(|c| exclude.contains(&c))
                .unwrap_or(false);
            if !excluded {
                walk(&path, exclude, out)?;
            }
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Sorts by name and makes names unique: the second and later holders of a name (in
/// tie-break key order) get `-2`, `-3`, ...
fn unique_names(mut named: Vec<(String, String, Source)>) -> Vec<Case> {
    named.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut taken: std::collections::HashSet<String> =
        named.iter().map(|(n, _, _)| n.clone()).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut cases: Vec<Case> = named
        .into_iter()
        .map(|(name, _, source)| {
            let count = seen.entry(name.clone()).or_default();
            *count += 1;
            let name = if *count == 1 {
                name
            } else {
                let mut n = *count;
                loop {
                    let candidate = format!("{name}-{n}");
                    if taken.insert(candidate.clone()) {
                        break candidate;
                    }
                    n += 1;
                }
            };
            Case { name, source }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// A name safe in file names, URLs and CSV on every system: ASCII letters, digits, `.`,
/// `-` and `_`; any run of other characters becomes one `_`; no `_`, `.` or `-` at
/// either end; at most 96 characters; `case` when nothing is left.
///
/// ```text
/// "Lung_Dx-A0002/1-Chest CT 8mm" -> "Lung_Dx-A0002_1-Chest_CT_8mm"
/// "../Brüno"                     -> "Br_no"
/// ```
pub fn sanitize(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed: String = out
        .trim_matches(['_', '.', '-'])
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    let trimmed = trimmed.trim_end_matches(['_', '.', '-']);
    if trimmed.is_empty() {
        "case".to_string()
    } else {
        trimmed.to_string()
    }
}

fn file_name_lower(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

const VOLUME_EXTENSIONS: [&str; 4] = [".nii.gz", ".nii", ".nrrd", ".nhdr"];

fn is_volume_name(lower: &str) -> bool {
    VOLUME_EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

/// True for volume file names that hold labels, not images: Slicer segmentations
/// (`.seg.nrrd`, `.seg.nhdr`) and names containing `label` or `segmentation`
/// (`ct-label.nrrd`, `lungs_label.nii.gz`, `Segmentation.nrrd`), as segkit and Slicer
/// name them. Case-insensitive; `lower` is the file name in lower case.
pub fn is_label_name(lower: &str) -> bool {
    lower.ends_with(".seg.nrrd")
        || lower.ends_with(".seg.nhdr")
        || lower.contains("label")
        || lower.contains("segmentation")
}

fn strip_volume_extension(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    for e in VOLUME_EXTENSIONS {
        if lower.ends_with(e) {
            return name[..name.len() - e.len()].to_string();
        }
    }
    name.to_string()
}

fn stem(p: &Path) -> String {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    strip_volume_extension(&name)
}

fn relative_display(base: &Path, p: &Path) -> String {
    p.strip_prefix(base)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The deepest folder holding every path.
fn common_folder<'a>(paths: impl Iterator<Item = &'a Path>) -> PathBuf {
    let mut common: Option<PathBuf> = None;
    for p in paths {
        let parent = p.parent().unwrap_or(Path::new("")).to_path_buf();
        common = Some(match common {
            None => parent,
            Some(c) => {
                let mut c = c;
                while !parent.starts_with(&c) {
                    if !c.pop() {
                        break;
                    }
                }
                c
            }
        });
    }
    common.unwrap_or_default()
}

/// One of `count` parts of a batch: the cases whose index in the sorted list is
/// `index` modulo `count` (0-based, as Kubernetes' `JOB_COMPLETION_INDEX` and Slurm's
/// `SLURM_ARRAY_TASK_ID` with `--array=0-(count-1)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole batch.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Keeps the items of this shard, with their index in `items`.
    pub fn select<T>(&self, items: Vec<T>) -> Vec<(usize, T)> {
        items
            .into_iter()
            .enumerate()
            .filter(|(n, _)| n % self.count == self.index)
            .collect()
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `I/N` with `0 <= I < N`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not I/N (e.g. 0/8 for the first of 8 shards)"))?;
        let number = |v: &str, what: &str| {
            v.trim().parse::<usize>().map_err(|_| {
                format!("'{s}': {what} '{v}' is not a whole number (the form is I/N, e.g. 0/8)")
            })
        };
        let (index, count) = (number(i, "I")?, number(n, "N")?);
        if count == 0 {
            return Err(format!("'{s}': N must be at least 1"));
        }
        if index >= count {
            return Err(format!(
                "'{s}': I must be below N: shards are numbered from 0, so {count} shards are 0/{count} to {}/{count}",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_take_every_nth_case_and_cover_all_once() {
        let items: Vec<usize> = (0..10).collect();
        let s: Shard = "1/3".parse().unwrap();
        let picked: Vec<usize> = s
            .select(items.clone())
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(picked, vec![1, 4, 7]);
        let mut all: Vec<usize> = (0..3)
            .flat_map(|i| Shard { index: i, count: 3 }.select(items.clone()))
            .map(|(_, v)| v)
            .collect();
        all.sort();
        assert_eq!(all, items);
        assert_eq!(Shard::ALL.select(items.clone()).len(), 10);
        // More shards than cases: some shards are empty.
        assert!(Shard {
            index: 11,
            count: 12
        }
        .select(items)
        .is_empty());
    }

    #[test]
    fn bad_shards_are_refused_with_the_reason() {
        let err = |s: &str| s.parse::<Shard>().unwrap_err();
        assert!(err("3/3").contains("0/3 to 2/3"), "{}", err("3/3"));
        assert!(err("0/0").contains("at least 1"));
        assert!(err("1").contains("I/N"));
        assert!(err("a/2").contains("'a'"));
        assert!(err("-1/2").contains("whole number"));
        assert_eq!("0/1".parse::<Shard>().unwrap(), Shard::ALL);
        assert_eq!(
            " 7 / 8".parse::<Shard>().unwrap(),
            Shard { index: 7, count: 8 }
        );
    }

    #[test]
    fn names_are_safe_file_names() {
        assert_eq!(
            sanitize("Lung_Dx-A0002/1-Chest CT 8mm"),
            "Lung_Dx-A0002_1-Chest_CT_8mm"
        );
        assert_eq!(sanitize("  ../ëye  "), "ye");
        assert_eq!(sanitize("../Brüno"), "Br_no");
        assert_eq!(sanitize("a  /  b"), "a_b");
        assert_eq!(sanitize("..."), "case");
        assert_eq!(sanitize(""), "case");
        assert_eq!(sanitize(&"x".repeat(300)).len(), MAX_NAME_CHARS);
        assert_eq!(sanitize("report,\"quoted\"\n"), "report_quoted");
    }

    #[test]
    fn label_maps_and_segmentations_are_recognised_by_name() {
        for n in [
            "ct-label.nrrd",
            "ct_label.nrrd",
            "lungs.seg.nrrd",
            "labels.nii.gz",
            "segmentation.nrrd",
        ] {
            assert!(is_label_name(n), "{n}");
        }
        for n in ["ct.nrrd", "chest.nii.gz", "ctchest4.nrrd", "seg.nii"] {
            assert!(!is_label_name(n), "{n}");
        }
    }

    fn write_nrrd(path: &Path) {
        let v = crate::volume::Volume::new(
            ndarray::Array3::<i16>::zeros((2, 2, 2)),
            Default::default(),
        );
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        crate::io::nrrd::write_volume(path, &crate::volume::AnyVolume::I16(v)).unwrap();
    }

    #[test]
    fn files_are_named_by_stem_and_collisions_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_nrrd(&d.join("b/ct.nrrd"));
        write_nrrd(&d.join("a/ct.nrrd"));
        write_nrrd(&d.join("chest 1.nrrd"));
        write_nrrd(&d.join("chest 1-label.nrrd"));
        write_nrrd(&d.join("out/should-not-be-seen.nrrd"));
        write_nrrd(&d.join(".hidden/x.nrrd"));
        std::fs::write(d.join("notes.txt"), "hello").unwrap();
        std::fs::write(d.join("scan.nhdr"), "NRRD0004\n").unwrap();
        std::fs::write(d.join("scan.raw.gz"), "data").unwrap();
        let found = discover(d, &[d.join("out")]).unwrap();
        let names: Vec<&str> = found.cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["a_ct", "b_ct", "chest_1", "scan"]);
        assert_eq!(found.label_files, 1);
        // The text file is reported; the detached data file is not.
        assert_eq!(found.skipped.len(), 1, "{:?}", found.skipped);
        assert_eq!(found.skipped[0].0, "notes.txt");
        assert!(found.skipped[0].1.contains("not a DICOM file"));
        // Same input, same names and order.
        let again = discover(d, &[d.join("out")]).unwrap();
        let again: Vec<&str> = again.cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(again, names);
    }

    #[test]
    fn colliding_names_get_numbered_suffixes() {
        let named = vec![
            ("x".to_string(), "2".to_string(), Source::File("b".into())),
            ("x".to_string(), "1".to_string(), Source::File("a".into())),
            ("x-2".to_string(), "3".to_string(), Source::File("c".into())),
        ];
        let cases = unique_names(named);
        let got: Vec<(String, String)> = cases
            .iter()
            .map(|c| match &c.source {
                Source::File(p) => (c.name.clone(), p.display().to_string()),
                Source::Dicom(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("x".into(), "a".into()),
                ("x-2".into(), "c".into()),
                ("x-3".into(), "b".into())
            ]
        );
    }

    #[test]
    fn the_common_folder_of_files() {
        let p = |s: &str| PathBuf::from(s);
        let files = [p("/d/a/b/1.dcm"), p("/d/a/b/2.dcm"), p("/d/a/c/3.dcm")];
        assert_eq!(common_folder(files.iter().map(|f| f.as_path())), p("/d/a"));
        assert_eq!(
            common_folder(files[..2].iter().map(|f| f.as_path())),
            p("/d/a/b")
        );
    }
}
