//! From frame headers to series: grouping, splitting stacks that repeat a position,
//! sorting along the slice normal, and the geometry with its warnings (see the module
//! docs of [`super`] for the rules).

use super::header::{FrameHeader, Instance, SPLIT_KEYS};
use super::{Frame, Series};
use crate::volume::{cross, dot, Geometry};
use std::collections::BTreeMap;

/// Two positions closer than this along the normal (mm) are the same slice position.
const SAME_POSITION_MM: f64 = 1e-3;
/// Orientation cosines and pixel spacings that differ by less than this group together.
const GROUP_TOLERANCE: f64 = 1e-4;
/// Angle (degrees) between the k axis and the slice normal above which a tilt is reported.
const TILT_WARNING_DEGREES: f64 = 0.05;
/// Relative deviation of a step from the median step above which spacing is uneven.
const UNEVEN_RELATIVE: f64 = 0.01;
/// Absolute deviation (mm) below which a step still counts as even.
const UNEVEN_ABSOLUTE_MM: f64 = 1e-3;
/// How close (as a fraction of the median step) a gap must be to a multiple of the step
/// to count as missing slices.
const MISSING_TOLERANCE: f64 = 0.1;

/// A frame of an instance: indices into the instance list and its frames.
#[derive(Debug, Clone, Copy)]
struct Item {
    inst: usize,
    frame: usize,
}

/// Groups, splits, sorts and measures every frame; returns the series in listing order.
pub(crate) fn assemble(instances: Vec<Instance>) -> Vec<Series> {
    let mut series = Vec::new();
    // Exact keys first, then clusters by orientation and spacing within each key.
    let mut groups: BTreeMap<String, Vec<(Cluster, Vec<Item>)>> = BTreeMap::new();
    for (i, inst) in instances.iter().enumerate() {
        for (f, frame) in inst.frames.iter().enumerate() {
            let item = Item { inst: i, frame: f };
            let Some(geo) = frame_geometry(frame) else {
                continue;
            };
            let key = group_key(inst);
            let clusters = groups.entry(key).or_default();
            match clusters.iter_mut().find(|(c, _)| c.matches(&geo)) {
                Some((_, items)) => items.push(item),
                None => clusters.push((geo, vec![item])),
            }
        }
        // Frames without a usable position or orientation: one series per file.
        let unplaced: Vec<Item> = (0..inst.frames.len())
            .filter(|&f| frame_geometry(&inst.frames[f]).is_none())
            .map(|f| Item { inst: i, frame: f })
            .collect();
        if !unplaced.is_empty() {
            series.push(unplaced_series(&instances, &unplaced));
        }
    }
    for clusters in groups.into_values() {
        for (cluster, items) in clusters {
            for (split, stack) in split_duplicates(&instances, &cluster, items) {
                series.push(build_series(&instances, &cluster, stack, split));
            }
        }
    }
    series.sort_by(|a, b| {
        (
            &a.patient_id,
            &a.study_instance_uid,
            a.series_number,
            &a.series_instance_uid,
        )
            .cmp(&(
                &b.patient_id,
                &b.study_instance_uid,
                b.series_number,
                &b.series_instance_uid,
            ))
            .then_with(|| a.split.cmp(&b.split))
            .then_with(|| {
                a.files
                    .first()
                    .map(|f| &f.path)
                    .cmp(&b.files.first().map(|f| &f.path))
            })
    });
    series
}

/// What frames must share to be stacked, besides the exact key.
#[derive(Debug, Clone, Copy)]
struct Cluster {
    row: [f64; 3],
    col: [f64; 3],
    normal: [f64; 3],
    /// PixelSpacing as stored: [between rows, between columns]; `None` when absent.
    spacing: Option<[f64; 2]>,
}

impl Cluster {
    fn matches(&self, other: &Cluster) -> bool {
        let close = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= GROUP_TOLERANCE)
        };
        let spacing = match (self.spacing, other.spacing) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                (0..2).all(|r| (a[r] - b[r]).abs() <= GROUP_TOLERANCE * a[r].max(1.0))
            }
            _ => false,
        };
        close(&self.row, &other.row) && close(&self.col, &other.col) && spacing
    }
}

/// The orientation of a frame, or `None` when it has no usable position and orientation.
fn frame_geometry(frame: &FrameHeader) -> Option<Cluster> {
    frame.position?;
    let o = frame.orientation?;
    let row = unit([o[0], o[1], o[2]])?;
    let col = unit([o[3], o[4], o[5]])?;
    let normal = unit(cross(row, col))?;
    Some(Cluster {
        row,
        col,
        normal,
        spacing: frame.pixel_spacing,
    })
}

/// The exact part of the grouping key.
fn group_key(inst: &Instance) -> String {
    let p = &inst.pixel;
    let mosaic = match &inst.mosaic {
        // A mosaic holds a whole volume: never stack two files of them.
        Some(m) => format!("mosaic {} {}", m.tiles, inst.path.display()),
        None => String::new(),
    };
    format!(
        "{}|{}|{}|{:?}|{}x{}x{}|{}/{}/{}/{}|{}|{:?}|{}",
        inst.patient_id,
        inst.study_uid,
        inst.series_uid,
        inst.series_number,
        p.columns,
        p.rows,
        p.samples_per_pixel,
        p.bits_allocated,
        p.bits_stored,
        p.high_bit,
        p.signed,
        p.photometric,
        p.sample,
        mosaic
    )
}

/// Splits a group whose frames repeat positions into stacks without repeats; returns
/// `(description of the split, items)` pairs.
fn split_duplicates(
    instances: &[Instance],
    cluster: &Cluster,
    items: Vec<Item>,
) -> Vec<(Option<String>, Vec<Item>)> {
    let depth = |it: &Item| dot(position(instances, *it), cluster.normal);
    let multiplicity = max_multiplicity(items.iter().map(depth).collect());
    if multiplicity <= 1 {
        return vec![(None, items)];
    }
    for (k, name) in SPLIT_KEYS.iter().enumerate() {
        let mut parts: BTreeMap<Option<String>, Vec<Item>> = BTreeMap::new();
        for it in &items {
            let value = instances[it.inst].frames[it.frame].keys[k].clone();
            parts.entry(value).or_default().push(*it);
        }
        let separates = parts.len() == multiplicity
            && parts
                .values()
                .all(|p| max_multiplicity(p.iter().map(depth).collect()) <= 1);
        if separates {
            let mut parts: Vec<_> = parts.into_iter().collect();
            parts.sort_by(|(a, _), (b, _)| compare_values(a.as_deref(), b.as_deref()));
            return parts
                .into_iter()
                .map(|(value, p)| {
                    let label = match (*name, value) {
                        ("File", Some(v)) => {
                            let p = std::path::Path::new(&v);
                            let name = p.file_name().map(|n| n.to_string_lossy());
                            format!("file {}", name.unwrap_or_else(|| v.as_str().into()))
                        }
                        (n, Some(v)) => format!("{n}={v}"),
                        (n, None) => format!("no {n}"),
                    };
                    (Some(label), p)
                })
                .collect();
        }
    }
    // No attribute separates the stacks: deal frames in InstanceNumber order into the
    // first stack that does not have their position yet.
    let mut ordered = items;
    ordered.sort_by_key(|it| {
        let inst = &instances[it.inst];
        (inst.instance_number, inst.path.clone(), it.frame)
    });
    let mut stacks: Vec<(Vec<f64>, Vec<Item>)> = Vec::new();
    for it in ordered {
        let d = depth(&it);
        match stacks
            .iter_mut()
            .find(|(ds, _)| ds.iter().all(|x| (x - d).abs() > SAME_POSITION_MM))
        {
            Some((ds, its)) => {
                ds.push(d);
                its.push(it);
            }
            None => stacks.push((vec![d], vec![it])),
        }
    }
    let n = stacks.len();
    stacks
        .into_iter()
        .enumerate()
        .map(|(s, (_, its))| {
            (
                Some(format!("stack {} of {n} (positions repeat)", s + 1)),
                its,
            )
        })
        .collect()
}

/// Numeric order when both values are numbers, text order otherwise; `None` last.
fn compare_values(a: Option<&str>, b: Option<&str>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.total_cmp(&y),
            _ => a.cmp(b),
        },
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// The largest number of values that coincide (within [`SAME_POSITION_MM`]).
fn max_multiplicity(mut depths: Vec<f64>) -> usize {
    depths.sort_by(f64::total_cmp);
    let mut best = 0;
    let mut run_start = 0;
    for i in 0..depths.len() {
        if depths[i] - depths[run_start] > SAME_POSITION_MM {
            run_start = i;
        }
        best = best.max(i - run_start + 1);
    }
    best
}

fn position(instances: &[Instance], it: Item) -> [f64; 3] {
    instances[it.inst].frames[it.frame]
        .position
        .unwrap_or([0.0; 3])
}

/// Builds a series from positioned frames of one stack.
fn build_series(
    instances: &[Instance],
    cluster: &Cluster,
    mut items: Vec<Item>,
    split: Option<String>,
) -> Series {
    items.sort_by(|a, b| {
        dot(position(instances, *a), cluster.normal)
            .total_cmp(&dot(position(instances, *b), cluster.normal))
    });
    let first = &instances[items[0].inst];
    let first_frame = &first.frames[items[0].frame];
    let mut warnings = Vec::new();
    // PixelSpacing is [between rows (j), between columns (i)].
    let (spacing_i, spacing_j) = match cluster.spacing {
        Some([rows, cols]) => (cols, rows),
        None => {
            warnings.push("no PixelSpacing: 1 mm assumed in-plane".to_string());
            (1.0, 1.0)
        }
    };
    let positions: Vec<[f64; 3]> = items.iter().map(|it| position(instances, *it)).collect();
    let origin = positions[0];
    let slice_step = first_frame
        .spacing_between_slices
        .or(first_frame.slice_thickness)
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);

    let (geometry, size_k) = if let Some(m) = &first.mosaic {
        // Move the origin from the mosaic's corner to the first tile's corner, and stack
        // the tiles along the CSA slice normal.
        let (rows, cols) = (first.pixel.rows as f64, first.pixel.columns as f64);
        let shift_j = (rows - m.tile_rows as f64) / 2.0 * spacing_j;
        let shift_i = (cols - m.tile_columns as f64) / 2.0 * spacing_i;
        let o = [0, 1, 2].map(|r| origin[r] + cluster.col[r] * shift_j + cluster.row[r] * shift_i);
        let k_axis = first.mosaic_normal.and_then(unit).unwrap_or(cluster.normal);
        let g = Geometry::from_axes(
            o,
            [spacing_i, spacing_j, slice_step],
            [cluster.row, cluster.col, k_axis],
        );
        (g, m.tiles)
    } else if positions.len() == 1 {
        let g = Geometry::from_axes(
            origin,
            [spacing_i, spacing_j, slice_step],
            [cluster.row, cluster.col, cluster.normal],
        );
        (g, 1)
    } else {
        let (k_axis, spacing_k, mut w) =
            measure_stack(&positions, cluster.normal, first.gantry_tilt);
        warnings.append(&mut w);
        if let Some(t) = first_frame.slice_thickness {
            if (t - spacing_k).abs() > UNEVEN_RELATIVE * spacing_k + UNEVEN_ABSOLUTE_MM {
                warnings.push(format!(
                    "SliceThickness {} mm differs from the slice spacing {} mm computed from the positions",
                    round(t),
                    round(spacing_k)
                ));
            }
        }
        let g = Geometry::from_axes(
            origin,
            [spacing_i, spacing_j, spacing_k],
            [cluster.row, cluster.col, k_axis],
        );
        (g, positions.len())
    };

    let mut series = common_series(instances, &items, geometry, size_k, split.clone(), warnings);
    if let Some(s) = &split {
        series.warnings.insert(
            0,
            format!(
                "SeriesInstanceUID {} holds several stacks at the same positions; this one is {s}",
                series.series_instance_uid
            ),
        );
    }
    if first.positions_synthetic {
        series.warnings.push(format!(
            "no per-frame positions: frames stacked every {} mm along the slice normal",
            round(slice_step)
        ));
    }
    series
}

/// A series of frames without position or orientation: identity orientation at the
/// ImagePositionPatient (or origin), frames stacked in file order.
fn unplaced_series(instances: &[Instance], items: &[Item]) -> Series {
    let first = &instances[items[0].inst];
    let frame = &first.frames[items[0].frame];
    let (si, sj) = match frame.pixel_spacing {
        Some([rows, cols]) => (cols, rows),
        None => (1.0, 1.0),
    };
    let sk = frame
        .spacing_between_slices
        .or(frame.slice_thickness)
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    let origin = frame.position.unwrap_or([0.0; 3]);
    let geometry = Geometry {
        origin,
        spacing: [si, sj, sk],
        ..Geometry::default()
    };
    let warnings = vec![
        "no usable ImagePositionPatient/ImageOrientationPatient: identity orientation assumed, frames in file order"
            .to_string(),
    ];
    let k = items.len();
    let mut s = common_series(instances, items, geometry, k, None, warnings);
    // Give each unplaced frame its lattice position so `files` stays meaningful.
    for (n, f) in s.files.iter_mut().enumerate() {
        f.position = geometry.index_to_lps([0.0, 0.0, n as f64]);
    }
    s
}

/// Fields every series fills the same way.
fn common_series(
    instances: &[Instance],
    items: &[Item],
    geometry: Geometry,
    size_k: usize,
    split: Option<String>,
    mut warnings: Vec<String>,
) -> Series {
    let first = &instances[items[0].inst];
    let mut transfer_syntaxes: Vec<String> = items
        .iter()
        .map(|it| instances[it.inst].transfer_syntax.clone())
        .collect();
    transfer_syntaxes.sort();
    transfer_syntaxes.dedup();
    let mut notes: Vec<String> = Vec::new();
    for it in items {
        for n in &instances[it.inst].notes {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
    }
    warnings.extend(notes);
    for uid in &transfer_syntaxes {
        if !super::transfer_syntax_supported(uid) {
            warnings.push(format!(
                "pixel data in {} cannot be decoded by this build{}",
                super::transfer_syntax_name(uid),
                super::decode::feature_hint(uid)
            ));
        }
    }
    let p = &first.pixel;
    if p.samples_per_pixel != 1 {
        warnings.push(format!(
            "{} samples per pixel ({}): colour images cannot be read",
            p.samples_per_pixel, p.photometric
        ));
    }
    if p.photometric == "MONOCHROME1" {
        warnings.push(
            "MONOCHROME1: higher values display darker; values are kept as stored".to_string(),
        );
    }
    let files = items
        .iter()
        .map(|it| {
            let inst = &instances[it.inst];
            let fh = &inst.frames[it.frame];
            Frame {
                path: inst.path.clone(),
                frame: fh.index,
                position: fh.position.unwrap_or([0.0; 3]),
                rescale: fh.rescale,
                instance_number: inst.instance_number,
                sop_instance_uid: inst.sop_instance_uid.clone(),
                sop_class_uid: inst.sop_class_uid.clone(),
            }
        })
        .collect();
    let (columns, rows) = match &first.mosaic {
        Some(m) => (m.tile_columns, m.tile_rows),
        None => (p.columns as usize, p.rows as usize),
    };
    Series {
        series_instance_uid: first.series_uid.clone(),
        series_number: first.series_number,
        description: first.description.clone(),
        modality: first.modality.clone(),
        patient_id: first.patient_id.clone(),
        study_instance_uid: first.study_uid.clone(),
        transfer_syntaxes,
        size_ijk: [columns, rows, size_k],
        geometry,
        warnings,
        files,
        pixel: first.pixel.clone(),
        mosaic: first.mosaic,
        split,
    }
}

/// The k axis and spacing of sorted positions (at least two), and the warnings about
/// tilt, uneven spacing, missing slices and positions off a line.
pub(crate) fn measure_stack(
    positions: &[[f64; 3]],
    normal: [f64; 3],
    gantry_tilt: Option<f64>,
) -> ([f64; 3], f64, Vec<String>) {
    let mut warnings = Vec::new();
    let n = positions.len();
    let (first, last) = (positions[0], positions[n - 1]);
    let span = sub(last, first);
    let k_axis = unit(span).unwrap_or(normal);
    let steps: Vec<f64> = positions
        .windows(2)
        .map(|w| dot(sub(w[1], w[0]), k_axis))
        .collect();
    let spacing = median(&steps);

    let tilt = dot(k_axis, normal).abs().min(1.0).acos().to_degrees();
    if tilt > TILT_WARNING_DEGREES {
        let tag = match gantry_tilt {
            Some(t) if t != 0.0 => format!(" (GantryDetectorTilt {} degrees)", round(t)),
            _ => String::new(),
        };
        warnings.push(format!(
            "gantry tilt: slices are offset in-plane; the k axis is {} degrees from the slice normal{tag}; the geometry keeps the slice positions (sheared lattice)",
            round(tilt)
        ));
    }

    // Distance of each position from the line through the first and last.
    let off_line = positions
        .iter()
        .map(|p| {
            let d = sub(*p, first);
            let along = dot(d, k_axis);
            crate::volume::norm(sub(d, scale(k_axis, along)))
        })
        .fold(0.0, f64::max);
    if off_line > 0.01 * spacing.abs().max(1e-3) && off_line > UNEVEN_ABSOLUTE_MM * 10.0 {
        warnings.push(format!(
            "slice positions are not on one line: up to {} mm off",
            round(off_line)
        ));
    }

    let even = |s: f64| (s - spacing).abs() <= UNEVEN_RELATIVE * spacing + UNEVEN_ABSOLUTE_MM;
    let mut missing = Vec::new();
    let mut uneven = false;
    for (m, &s) in steps.iter().enumerate() {
        if even(s) {
            continue;
        }
        let multiple = (s / spacing).round();
        if multiple >= 2.0 && (s - multiple * spacing).abs() <= MISSING_TOLERANCE * spacing {
            missing.push((m, multiple as usize - 1, s));
        } else {
            uneven = true;
        }
    }
    if !missing.is_empty() {
        let count: usize = missing.iter().map(|(_, c, _)| c).sum();
        let gaps: Vec<String> = missing
            .iter()
            .map(|(m, c, s)| {
                format!(
                    "{c} between slices {m} and {} ({} mm gap)",
                    m + 1,
                    round(*s)
                )
            })
            .collect();
        warnings.push(format!(
            "{count} missing slice(s) (typical step {} mm): {}; the volume stacks the slices present",
            round(spacing),
            gaps.join(", ")
        ));
    }
    if uneven {
        let (lo, hi) = steps
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &s| {
                (lo.min(s), hi.max(s))
            });
        warnings.push(format!(
            "uneven slice spacing: steps from {} to {} mm (median {} mm used); voxel positions along k are approximate",
            round(lo),
            round(hi),
            round(spacing)
        ));
    }
    (k_axis, spacing, warnings)
}

/// The normal of an ImageOrientationPatient (row × column), not normalised when degenerate.
pub(crate) fn normal_of(o: &[f64; 6]) -> [f64; 3] {
    let n = cross([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    unit(n).unwrap_or(n)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn norm(v: [f64; 3]) -> f64 {
    crate::volume::norm(v)
}

fn unit(v: [f64; 3]) -> Option<[f64; 3]> {
    let n = norm(v);
    (n.is_finite() && n > 1e-6).then(|| [v[0] / n, v[1] / n, v[2] / n])
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

/// A number for a message: 4 significant decimals, no trailing zeros.
fn round(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: [f64; 3] = [0.0, 0.0, 1.0];

    fn stack(zs: &[f64]) -> Vec<[f64; 3]> {
        zs.iter().map(|&z| [0.0, 0.0, z]).collect()
    }

    #[test]
    fn even_stack_has_no_warnings() {
        let (k, s, w) = measure_stack(&stack(&[0.0, 2.5, 5.0, 7.5]), Z, None);
        assert_eq!(k, Z);
        assert!((s - 2.5).abs() < 1e-12);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn a_gap_of_two_steps_is_one_missing_slice() {
        let (_, s, w) = measure_stack(&stack(&[0.0, 2.0, 4.0, 8.0, 10.0]), Z, None);
        assert!((s - 2.0).abs() < 1e-12);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("1 missing slice(s) (typical step 2 mm)"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("between slices 2 and 3"), "{}", w[0]);
    }

    #[test]
    fn irregular_steps_are_reported_with_their_range() {
        let (_, s, w) = measure_stack(&stack(&[0.0, 1.0, 2.0, 3.5, 4.5]), Z, None);
        assert!((s - 1.0).abs() < 1e-12);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("steps from 1 to 1.5 mm (median 1 mm"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn tilted_stack_keeps_its_positions_and_reports_the_angle() {
        let t = 20f64.to_radians();
        let p: Vec<[f64; 3]> = (0..4)
            .map(|n| [0.0, n as f64 * t.tan(), n as f64])
            .collect();
        let (k, s, w) = measure_stack(&p, Z, Some(20.0));
        assert!((k[1] - t.sin()).abs() < 1e-12 && (k[2] - t.cos()).abs() < 1e-12);
        assert!((s - 1.0 / t.cos()).abs() < 1e-12);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("20 degrees from the slice normal (GantryDetectorTilt 20 degrees)"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn multiplicity_counts_coincident_positions() {
        assert_eq!(max_multiplicity(vec![0.0, 1.0, 2.0]), 1);
        assert_eq!(max_multiplicity(vec![0.0, 1.0, 0.0, 1.0, 0.0005]), 3);
        assert_eq!(max_multiplicity(vec![]), 0);
    }

    #[test]
    fn numbers_in_messages_are_short() {
        assert_eq!(round(2.0), "2");
        assert_eq!(round(0.48828125), "0.4883");
        assert_eq!(round(-0.00001), "0");
    }
}
