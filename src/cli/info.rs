//! `segkit info PATH...`: what each file or folder holds.
//!
//! One report per volume or series, printed as text or, with `--json`, as one JSON array
//! that scripts can read.

use crate::error::Result;
use crate::io::{self, Dataset, Format};
use crate::volume::{AnyVolume, Geometry};
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Files or folders (folders are searched recursively for DICOM files).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print one JSON array instead of text.
    #[arg(long)]
    json: bool,
}

/// What `info` says about one volume or series.
#[derive(Debug, Serialize)]
pub struct Report {
    pub path: PathBuf,
    pub format: &'static str,
    /// For DICOM: the series' number in the listing (what `--series` takes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series_instance_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series_number: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modality: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transfer_syntaxes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<usize>,
    pub size: [usize; 3],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voxel_type: Option<String>,
    pub spacing_mm: [f64; 3],
    pub origin_lps_mm: [f64; 3],
    /// Row-major; columns are the i, j, k unit vectors in LPS.
    pub direction: [[f64; 3]; 3],
    /// Closest axis-aligned orientation, letters for i, j, k (`LPS`, `RAS`, ...).
    pub orientation: String,
    pub oblique_degrees: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<(f64, f64)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SegmentReport {
    pub id: String,
    pub name: String,
    pub label_value: u16,
    pub layer: usize,
    pub color: [f64; 3],
    pub voxels: usize,
}

impl Report {
    fn new(path: &Path, format: &'static str, size: [usize; 3], g: &Geometry) -> Self {
        Report {
            path: path.to_path_buf(),
            format,
            series_index: None,
            series_instance_uid: None,
            series_number: None,
            description: None,
            modality: None,
            transfer_syntaxes: Vec::new(),
            files: None,
            size,
            voxel_type: None,
            spacing_mm: g.spacing,
            origin_lps_mm: g.origin,
            direction: g.direction,
            orientation: g.orientation_code(),
            oblique_degrees: g.obliquity_degrees(),
            range: None,
            segments: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn from_volume(path: &Path, format: &'static str, v: &AnyVolume) -> Self {
        let mut r = Report::new(path, format, v.size_ijk(), v.geometry());
        r.voxel_type = Some(v.scalar_type().to_string());
        r.range = v.min_max();
        r
    }
}

pub fn run(args: &InfoArgs) -> Result<()> {
    let mut reports = Vec::new();
    let mut skipped = Vec::new();
    for path in &args.paths {
        let (r, s) = reports_for(path)?;
        reports.extend(r);
        skipped.extend(s);
    }
    if args.json {
        let json = serde_json::to_string_pretty(&reports)
            .map_err(|e| crate::Error::InvalidArgument(format!("cannot print JSON: {e}")))?;
        println!("{json}");
    } else {
        for r in &reports {
            print_text(r);
        }
    }
    if !skipped.is_empty() {
        eprintln!("{} file(s) skipped (not DICOM images):", skipped.len());
        for (p, why) in skipped.iter().take(20) {
            eprintln!("  {}: {why}", p.display());
        }
        if skipped.len() > 20 {
            eprintln!("  ... and {} more", skipped.len() - 20);
        }
    }
    Ok(())
}

type Skipped = Vec<(PathBuf, String)>;

/// Reports for one command-line path, and the files skipped in it.
pub fn reports_for(path: &Path) -> Result<(Vec<Report>, Skipped)> {
    let format = Format::from_path(path)?;
    if format == Format::Dicom {
        return dicom_reports(path);
    }
    let report = match io::open(path)? {
        Dataset::Volume(v) => Report::from_volume(path, format.name(), &v),
        Dataset::Segmentation(s) => {
            let mut r = Report::new(path, format.name(), s.size_ijk(), &s.geometry);
            r.voxel_type = Some("u16 labels".into());
            r.segments = s
                .segments
                .iter()
                .map(|seg| SegmentReport {
                    id: seg.id.clone(),
                    name: seg.name.clone(),
                    label_value: seg.label_value,
                    layer: seg.layer,
                    color: seg.color,
                    voxels: s
                        .layers
                        .get(seg.layer)
                        .map(|l| l.iter().filter(|&&v| v == seg.label_value).count())
                        .unwrap_or(0),
                })
                .collect();
            r
        }
    };
    Ok((vec![report], Vec::new()))
}

fn dicom_reports(path: &Path) -> Result<(Vec<Report>, Skipped)> {
    let scan = crate::io::dicom::scan(&[path.to_path_buf()])?;
    let reports = scan
        .series
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let mut r = Report::new(path, "DICOM", s.size_ijk, &s.geometry);
            r.series_index = Some(n + 1);
            r.series_instance_uid = Some(s.series_instance_uid.clone());
            r.series_number = s.series_number;
            r.description = Some(s.description.clone());
            r.modality = Some(s.modality.clone());
            r.transfer_syntaxes = s.transfer_syntax_names();
            r.files = Some(s.files.len());
            r.voxel_type = Some(s.voxel_type().to_string());
            r.warnings = s.warnings.clone();
            r
        })
        .collect();
    Ok((reports, scan.skipped))
}

fn fmt3(v: [f64; 3]) -> String {
    format!("{} x {} x {}", round6(v[0]), round6(v[1]), round6(v[2]))
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn print_text(r: &Report) {
    match r.series_index {
        Some(n) => println!("{} [series {n}]", r.path.display()),
        None => println!("{}", r.path.display()),
    }
    println!("  format       {}", r.format);
    if let Some(uid) = &r.series_instance_uid {
        println!(
            "  series       #{} {:?} ({uid})",
            opt(r.series_number),
            opt(r.description.as_deref())
        );
    }
    if let Some(m) = &r.modality {
        println!("  modality     {m}");
    }
    for ts in &r.transfer_syntaxes {
        println!("  transfer     {ts}");
    }
    if let Some(n) = r.files {
        println!("  files        {n}");
    }
    println!(
        "  size         {} x {} x {} (i x j x k)",
        r.size[0], r.size[1], r.size[2]
    );
    if let Some(t) = &r.voxel_type {
        println!("  voxel type   {t}");
    }
    println!("  spacing      {} mm", fmt3(r.spacing_mm));
    let o = r.origin_lps_mm;
    println!(
        "  origin       ({}, {}, {}) mm LPS",
        round6(o[0]),
        round6(o[1]),
        round6(o[2])
    );
    if r.oblique_degrees > 1e-3 {
        println!(
            "  orientation  oblique, {:.2} degrees from {}",
            r.oblique_degrees, r.orientation
        );
    } else {
        println!("  orientation  {} (axes point to)", r.orientation);
    }
    if let Some((lo, hi)) = r.range {
        println!("  range        {lo} .. {hi}");
    }
    for s in &r.segments {
        println!(
            "  segment      {:?} id={} label={} layer={} voxels={}",
            s.name, s.id, s.label_value, s.layer, s.voxels
        );
    }
    for w in &r.warnings {
        println!("  warning      {w}");
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "?".into())
}
