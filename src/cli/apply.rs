//! `segkit effects` and `segkit apply`: the effects without Slicer.
//!
//! `apply` reads a source volume and (optionally) the current label map, where each label
//! is a segment, runs one effect on the selected segment with Slicer's masking semantics,
//! and writes the whole label map after the effect.

use crate::effects::catalog::{self, ParamType, RunInput};
use crate::effects::masking::{apply_output, MaskMode, Masking, OverwriteMode, SegmentMasks};
use crate::effects::{flatten_masks, Control};
use crate::error::{Error, Result};
use crate::io::{self, Dataset};
use crate::volume::{AnyVolume, Geometry, Labelmap, Volume};
use clap::Args;
use ndarray::Array3;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct EffectsArgs {
    /// Print one JSON array instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The effect, as `segkit effects` lists it (`threshold`, `islands`, ...).
    effect: String,
    /// The source volume: DICOM folder, .nrrd, .nhdr, .nii, .nii.gz.
    volume: PathBuf,
    /// The label map to write after the effect (format by extension, as `segkit convert`).
    #[arg(short, long)]
    output: PathBuf,
    /// The current label map, on the volume's grid: each label is a segment (all of them
    /// visible, in label order).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// The selected segment's label; a new label (one above the largest) when absent.
    /// Parameters that name another segment (`ModifierSegmentID`) take its label too.
    #[arg(long)]
    segment: Option<u16>,
    /// An effect parameter with Slicer's name: `-p MinimumThreshold=-1024`.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// The clicked voxel for click operations, as `I,J,K` (voxel indices); repeat it for
    /// several points (a Paint or Erase stroke).
    #[arg(long, value_name = "I,J,K", conflicts_with = "point_lps")]
    point: Vec<String>,
    /// The clicked position for click operations, as `X,Y,Z` in LPS millimetres;
    /// repeatable.
    #[arg(long, value_name = "X,Y,Z")]
    point_lps: Vec<String>,
    /// Points from a Slicer markups point list (`.mrk.json` or `.fcsv`, in the file's
    /// coordinate system), after any `--point-lps`: the boundary points of
    /// `boundary-points`.
    #[arg(long, value_name = "FILE", conflicts_with = "point")]
    points: Option<PathBuf>,
    /// Which other segments the edit may take voxels from.
    #[arg(long, value_enum, default_value = "all")]
    overwrite: Overwrite,
    /// Where the selected segment may change (Slicer's "Editable area").
    #[arg(long, value_enum, default_value = "everywhere")]
    editable_area: EditableArea,
    /// The segment (label) of `--editable-area inside-segment`.
    #[arg(long, value_name = "LABEL")]
    mask_segment: Option<u16>,
    /// Editable intensity range `MIN,MAX` (inclusive): voxels outside it do not change.
    #[arg(long, value_name = "MIN,MAX")]
    intensity_range: Option<String>,
    /// When a DICOM folder holds several series: which one (see `segkit info`).
    #[arg(long)]
    series: Option<String>,
    /// Print the effect's own compute time as a last line `{"effect_seconds": S}`.
    #[arg(long)]
    time: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EditableArea {
    /// Everywhere (Slicer's default).
    Everywhere,
    /// Inside any segment, the selected one included.
    InsideAll,
    /// Inside any visible segment (all segments of the label map are visible).
    InsideVisible,
    /// Outside every other segment.
    OutsideAll,
    /// Outside every other visible segment.
    OutsideVisible,
    /// Inside the segment given by `--mask-segment`.
    InsideSegment,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Overwrite {
    All,
    Visible,
    None,
}

pub fn effects(args: &EffectsArgs) -> Result<()> {
    let all = catalog::effects();
    if args.json {
        let list: Vec<_> = all
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name,
                    "cli_name": e.cli_name,
                    "help": e.help,
                    "parameters": e.params.iter().map(|p| serde_json::json!({
                        "name": p.name,
                        "default": p.default,
                        "type": match &p.kind {
                            ParamType::Double => "double",
                            ParamType::Integer => "integer",
                            ParamType::Boolean => "boolean",
                            ParamType::Choice(_) => "choice",
                            ParamType::Segment => "segment",
                        },
                        "choices": match &p.kind {
                            ParamType::Choice(c) => c.iter().map(|c| c.value).collect::<Vec<_>>(),
                            _ => vec![],
                        },
                        "help": p.help,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(());
    }
    for e in &all {
        println!("{}  ({})", e.cli_name, e.name);
        println!("    {}", e.help);
        for p in &e.params {
            let kind = match &p.kind {
                ParamType::Double => "number".to_string(),
                ParamType::Integer => "integer".to_string(),
                ParamType::Boolean => "0 or 1".to_string(),
                ParamType::Choice(c) => c.iter().map(|c| c.value).collect::<Vec<_>>().join(" | "),
                ParamType::Segment => "label of another segment".to_string(),
            };
            let default = match p.default_from_source {
                Some(f) => format!("from the source volume ({f:?})"),
                None => p.default.to_string(),
            };
            println!("    -p {}=<{kind}>  default {default}", p.name);
            if !p.help.is_empty() {
                println!("        {}", p.help);
            }
        }
        println!();
    }
    Ok(())
}

pub fn apply(args: &ApplyArgs) -> Result<()> {
    let spec = catalog::find(&args.effect)?;
    // Fails early, before reading anything, on a bad name or value.
    let parameters = parse_params(&args.params)?;
    crate::effects::ParamValues::new(&spec, &parameters)?;
    let source = io::OpenOptions::new()
        .series(args.series.clone())
        .open(&args.volume)?
        .into_volume();
    let [ni, nj, nk] = source.size_ijk();
    let geometry = *source.geometry();

    // Segments from the label map: one per label, in label order.
    let labelmap = match &args.labels {
        Some(path) => {
            let lm = io::labelmap_from(&io::open(path)?.into_volume(), path)?;
            check_same_grid(&lm, [ni, nj, nk], &geometry, path)?;
            lm
        }
        None => Volume::new(Array3::zeros((nk, nj, ni)), geometry),
    };
    let mut labels: Vec<u16> = present_labels(&labelmap);
    let next_label = labels.last().map_or(1, |&l| l.saturating_add(1));
    let selected_label = args.segment.unwrap_or(next_label);
    if selected_label == 0 {
        return Err(Error::InvalidArgument(
            "--segment 0 is the background, not a segment".into(),
        ));
    }
    let mut segments = SegmentMasks {
        masks: labels
            .iter()
            .map(|&l| labelmap.data.mapv(|v| u8::from(v == l)))
            .collect(),
        visible: vec![true; labels.len()],
    };
    let mut names: Vec<String> = labels.iter().map(|l| format!("label {l}")).collect();
    let selected = labels.iter().position(|&l| l == selected_label);
    let ids: Vec<String> = labels.iter().map(|l| l.to_string()).collect();

    let masking = Masking {
        mask_mode: match args.editable_area {
            EditableArea::Everywhere => MaskMode::Everywhere,
            EditableArea::InsideAll => MaskMode::InsideAllSegments,
            EditableArea::InsideVisible => MaskMode::InsideVisibleSegments,
            EditableArea::OutsideAll => MaskMode::OutsideAllSegments,
            EditableArea::OutsideVisible => MaskMode::OutsideVisibleSegments,
            EditableArea::InsideSegment => {
                let label = args.mask_segment.ok_or_else(|| {
                    Error::InvalidArgument(
                        "--editable-area inside-segment needs --mask-segment LABEL".into(),
                    )
                })?;
                let n = labels.iter().position(|&l| l == label).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "--mask-segment {label}: no such label in --labels (labels: {labels:?})"
                    ))
                })?;
                MaskMode::InsideSingleSegment(n)
            }
        },
        overwrite_mode: match args.overwrite {
            Overwrite::All => OverwriteMode::AllSegments,
            Overwrite::Visible => OverwriteMode::VisibleSegments,
            Overwrite::None => OverwriteMode::None,
        },
        intensity_range: args
            .intensity_range
            .as_deref()
            .map(|s| parse_pair(s, "--intensity-range"))
            .transpose()?,
    };
    let points_kji = parse_points(args, &geometry, [ni, nj, nk])?;
    let started = Instant::now();
    let output = catalog::run(
        spec.name,
        &RunInput {
            source: Some(&source),
            geometry: &geometry,
            segments: &segments.masks,
            visible: &segments.visible,
            segment_ids: &ids,
            selected,
            points_kji: &points_kji,
            parameters: &parameters,
            control: &Control::none(),
            masking: Some(&masking),
        },
    )?;
    let effect_seconds = started.elapsed().as_secs_f64();
    for (name, value) in &output.reported {
        eprintln!("{}: {name} = {value}", spec.name);
    }
    if let Some(v) = output.volumes.first() {
        // An effect that makes a volume (Mask volume): the volume is the output.
        io::write(
            &args.output,
            Dataset::Volume(v.volume.clone()),
            &args.volume,
        )?;
        eprintln!("wrote {}", args.output.display());
        print_time(args, effect_seconds);
        return Ok(());
    }

    let selected_name = format!("label {selected_label}");
    let before = segments.masks.len();
    let (_, selected_index) = apply_output(
        &mut segments,
        &mut names,
        selected,
        &selected_name,
        &output,
        &masking,
        Some(&source),
    )?;
    // Labels of segments the effect created: the selected one (if new) first, then one
    // above the largest label for each new segment.
    let mut next = next_label.max(selected_label.saturating_add(1));
    for n in before..segments.masks.len() {
        if Some(n) == selected_index && selected.is_none() {
            labels.push(selected_label);
        } else {
            labels.push(next);
            next = next.saturating_add(1);
        }
    }
    // The label map after the effect; where segments overlap the later one wins.
    let out = flatten_masks(
        segments
            .masks
            .iter()
            .map(|m| m.view())
            .zip(labels.iter().copied()),
        (nk, nj, ni),
    );
    let out = if out.iter().all(|&v| v <= i16::MAX as u16) {
        AnyVolume::I16(Volume::new(out.mapv(|v| v as i16), geometry))
    } else {
        AnyVolume::U16(Volume::new(out, geometry))
    };
    io::write(&args.output, Dataset::Volume(out), &args.volume)?;
    eprintln!("wrote {}", args.output.display());
    print_time(args, effect_seconds);
    Ok(())
}

fn print_time(args: &ApplyArgs, effect_seconds: f64) {
    if args.time {
        println!(
            "{}",
            serde_json::json!({ "effect_seconds": effect_seconds })
        );
    }
}

fn present_labels(lm: &Labelmap) -> Vec<u16> {
    let mut present = vec![false; u16::MAX as usize + 1];
    for &v in lm.data.iter() {
        present[v as usize] = true;
    }
    (1..=u16::MAX).filter(|&v| present[v as usize]).collect()
}

fn check_same_grid(
    lm: &Labelmap,
    size: [usize; 3],
    g: &Geometry,
    path: &std::path::Path,
) -> Result<()> {
    if lm.size_ijk() != size || !lm.geometry.approx_eq(g, 1e-3) {
        return Err(Error::InvalidArgument(format!(
            "{}: the label map's grid ({:?} voxels, origin {:?}, spacing {:?}) is not the volume's \
             ({size:?} voxels, origin {:?}, spacing {:?}); resample it first",
            path.display(),
            lm.size_ijk(),
            lm.geometry.origin,
            lm.geometry.spacing,
            g.origin,
            g.spacing
        )));
    }
    Ok(())
}

fn parse_params(params: &[String]) -> Result<BTreeMap<String, String>> {
    params
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| Error::InvalidArgument(format!("-p {p:?}: expected NAME=VALUE")))
        })
        .collect()
}

fn parse_numbers(s: &str, n: usize, flag: &str) -> Result<Vec<f64>> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            Error::InvalidArgument(format!(
                "{flag} {s:?}: expected {n} comma-separated numbers"
            ))
        })?;
    if v.len() != n || v.iter().any(|x| !x.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "{flag} {s:?}: expected {n} comma-separated numbers"
        )));
    }
    Ok(v)
}

fn parse_pair(s: &str, flag: &str) -> Result<(f64, f64)> {
    let v = parse_numbers(s, 2, flag)?;
    Ok((v[0], v[1]))
}

fn parse_points(args: &ApplyArgs, g: &Geometry, size: [usize; 3]) -> Result<Vec<[usize; 3]>> {
    let mut out = Vec::new();
    for p in &args.point {
        let ijk = parse_numbers(p, 3, "--point")?;
        if (0..3).any(|a| ijk[a].fract() != 0.0 || ijk[a] < 0.0 || ijk[a] >= size[a] as f64) {
            return Err(Error::InvalidArgument(format!(
                "--point {p}: (i, j, k) = ({}, {}, {}) is outside the volume of {} x {} x {} voxels",
                ijk[0], ijk[1], ijk[2], size[0], size[1], size[2]
            )));
        }
        out.push([ijk[2] as usize, ijk[1] as usize, ijk[0] as usize]);
    }
    for p in &args.point_lps {
        let v = parse_numbers(p, 3, "--point-lps")?;
        let kji = g
            .nearest_voxel_kji([v[0], v[1], v[2]], size)
            .map_err(|e| Error::InvalidArgument(format!("--point-lps {p}: {e}")))?;
        out.push(kji);
    }
    if let Some(file) = &args.points {
        for v in io::markups::read_points_lps(file)? {
            let kji = g
                .nearest_voxel_kji(v, size)
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", file.display())))?;
            out.push(kji);
        }
    }
    Ok(out)
}
