//! Automatic lung segmentation of a chest CT: right lung = 1, left lung = 2, trachea and
//! main bronchi excluded, vessels and nodules inside the lungs included.
//!
//! # Method
//! Classical image processing after Hu, Hoffman and Reinhardt, "Automatic lung
//! segmentation for accurate quantitation of volumetric X-ray CT images", IEEE TMI 20(6),
//! 2001 (<https://doi.org/10.1109/42.929615>), built from segkit's kernels:
//!
//! 1. **Optimal threshold.** Starting at -500 HU, the threshold becomes the mean of the
//!    mean below it and the mean above it until it settles (Hu's iterative selection),
//!    over voxels of -1100 HU and more (the -2000/-3024 padding outside the field of view
//!    is left out). It is kept within [-700, -300] HU, with a warning when clamped.
//! 2. **Air inside the body.** In every axial slice, air (below the threshold) connected
//!    to the slice's border (4-connected) is outside air: the air around the patient, the
//!    padding outside the field of view, the air under the table. Working slice by slice
//!    keeps the airways apart from outside air reached through the mouth or nose when the
//!    scan includes the head.
//! 3. **Lung candidates.** The 3-D components (6-connected) of the inside air. Components
//!    with half or more of their voxels below -950 HU are gas (bowel, stomach: air without
//!    tissue), not lung parenchyma (-900 to -700 HU), and are dropped. Of the others, the
//!    largest (the lungs with the airways, or one lung) is kept, and a second one when it
//!    holds at least 15 % of the largest's voxels and lies mostly at the largest's height
//!    (the other lung when the two do not touch). The oesophagus and air in the table are
//!    smaller and are dropped.
//! 4. **Airways.** The trachea is found in the upper slices of the candidates as a
//!    roundish air region of 30 to 800 mm² near the left-right centre, and followed
//!    downwards slice by slice: a region of the next slice belongs to the airways when it
//!    overlaps the airways of the slice above and is not much larger than them (2.5 times
//!    plus 20 mm², at most 1200 mm²). Where a main bronchus enters the lung its region
//!    merges with the lung's and tracking stops, so the trachea and the main bronchi are
//!    removed and the bronchi inside the lungs are kept.
//! 5. **Left and right.** Without the airways, two large components are the two lungs.
//!    When the lungs touch (anterior or posterior junction), the component is eroded by a
//!    growing distance (a per-slice Euclidean distance map in mm) until it falls into two
//!    parts on either side of the midline; every voxel then goes to the part it is
//!    geodesically nearest to (a breadth-first flood of both parts inside the lungs).
//!    The lung on the patient's right (smaller LPS x) is the right lung.
//! 6. **Holes.** Each lung's holes in every axial slice are filled, which brings in
//!    vessels, airway walls and nodules surrounded by lung.
//!
//! Orientation and spacing: the steps above run on the array axes nearest to the
//! patient's axial, anterior-posterior and left-right directions, so any orientation
//! works, and sizes are in mm (any spacing).
//!
//! # Checks
//! The input must look like a CT in Hounsfield units (voxels below -500 HU) with at
//! least 150 mL of air inside the body; otherwise the error says what was found. One lung
//! only, a lung smaller than 0.5 L or larger than 5 L, a trachea that is not found and a
//! clamped threshold are reported as warnings.
//!
//! # Example
//! ```no_run
//! use segkit::auto::lungs::{segment_lungs, LungOptions};
//! use segkit::effects::Control;
//! # fn main() -> segkit::Result<()> {
//! let ct = segkit::io::open("chest.nrrd".as_ref())?.into_volume();
//! let lungs = segment_lungs(&ct, &LungOptions::default(), &Control::none())?;
//! println!("right {:.0} mL, left {:.0} mL", lungs.right_ml, lungs.left_ml);
//! # Ok(()) }
//! ```

use crate::effects::{Control, EffectError};
use crate::kernels::bbox::nonzero_box;
use crate::kernels::components::{enclosed, label_runs, Components, Connectivity};
use crate::kernels::distance::{squared_distance, DistanceError};
use crate::volume::{AnyVolume, Labelmap, Scalar, Segment, Segmentation, Volume};
use ndarray::{s, Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, Axis, Zip};
use rayon::prelude::*;
use std::collections::VecDeque;

/// Label of the right lung.
pub const RIGHT_LUNG: u16 = 1;
/// Label of the left lung.
pub const LEFT_LUNG: u16 = 2;
/// Slicer's colour for the right lung (its General Anatomy terminology).
pub const RIGHT_LUNG_COLOR: [f64; 3] = [0.0862745, 0.772549, 0.278431];
/// Slicer's colour for the left lung.
pub const LEFT_LUNG_COLOR: [f64; 3] = [0.772549, 0.0980392, 0.388235];
/// Slicer's terminology entry of the right lung (SNOMED CT Lung, modifier Right).
pub const RIGHT_LUNG_TERMINOLOGY: &str = "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~SCT^39607008^Lung~SCT^24028007^Right~Anatomic codes - DICOM master list~^^~^^";
/// Slicer's terminology entry of the left lung (SNOMED CT Lung, modifier Left).
pub const LEFT_LUNG_TERMINOLOGY: &str = "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~SCT^39607008^Lung~SCT^7771000^Left~Anatomic codes - DICOM master list~^^~^^";

/// Threshold range Hu's iterative selection is kept in (HU).
const THRESHOLD_RANGE_HU: (f64, f64) = (-700.0, -300.0);
/// Voxels below this are padding outside the field of view, not air (HU).
const PADDING_BELOW_HU: i16 = -1100;
/// Least air inside the body for a chest CT (mL).
const MIN_LUNGS_ML: f64 = 150.0;
/// A second air component is the other lung when it holds this share of the largest's
/// voxels.
const SECOND_LUNG_SHARE: f64 = 0.15;
/// Air components with at least this share of voxels below [`PURE_AIR_HU`] are gas
/// (bowel, stomach), not lung: lung parenchyma is tissue and air mixed, -900 to -700 HU.
const GAS_SHARE: f64 = 0.5;
/// Below this a voxel is air without tissue (HU).
const PURE_AIR_HU: i16 = -950;
/// Pieces of lung smaller than this (mL) that the airway removal cut off are dropped.
const MIN_PIECE_ML: f64 = 2.0;
/// Trachea cross-section area range when it is first found (mm²).
const TRACHEA_AREA_MM2: (f64, f64) = (30.0, 800.0);
/// Largest airway cross-section followed downwards (mm²).
const MAX_AIRWAY_AREA_MM2: f64 = 1200.0;
/// Lung volume range outside which a warning is given (mL).
const PLAUSIBLE_LUNG_ML: (f64, f64) = (500.0, 5000.0);

/// Options of [`segment_lungs`]; `Default` is the published method.
#[derive(Debug, Clone, PartialEq)]
pub struct LungOptions {
    /// Air/tissue threshold in HU; `None` selects it (Hu's iterative optimal threshold).
    pub threshold_hu: Option<f64>,
    /// Remove the trachea and the main bronchi.
    pub exclude_airways: bool,
    /// Fill each lung's holes in every axial slice (vessels, nodules).
    pub fill_holes: bool,
}

impl Default for LungOptions {
    fn default() -> Self {
        LungOptions {
            threshold_hu: None,
            exclude_airways: true,
            fill_holes: true,
        }
    }
}

/// The lungs found in a CT.
#[derive(Debug, Clone, PartialEq)]
pub struct Lungs {
    /// On the CT's lattice: 0 background, [`RIGHT_LUNG`], [`LEFT_LUNG`].
    pub labels: Labelmap,
    /// Volume of the right lung (mL).
    pub right_ml: f64,
    /// Volume of the left lung (mL).
    pub left_ml: f64,
    /// Volume of the airways removed (mL).
    pub airways_ml: f64,
    /// The air/tissue threshold used (HU).
    pub threshold_hu: f64,
    /// What a person checking the result should know (one lung only, unusual volumes...).
    pub warnings: Vec<String>,
}

impl Lungs {
    /// The result as a Slicer segmentation: segments "right lung" (label 1) and "left
    /// lung" (label 2) with Slicer's colours and terminology.
    pub fn to_segmentation(&self) -> Segmentation {
        let segment = |id: &str, name: &str, label, color, terminology: &str| {
            let mut s = Segment::new(id, name, label, 0);
            s.color = color;
            s.color_auto_generated = false;
            s.tags = vec![
                ("Segmentation.Status".into(), "completed".into()),
                ("TerminologyEntry".into(), terminology.into()),
            ];
            s
        };
        Segmentation {
            geometry: self.labels.geometry,
            layers: vec![self.labels.data.clone()],
            segments: vec![
                segment(
                    "right_lung",
                    "right lung",
                    RIGHT_LUNG,
                    RIGHT_LUNG_COLOR,
                    RIGHT_LUNG_TERMINOLOGY,
                ),
                segment(
                    "left_lung",
                    "left lung",
                    LEFT_LUNG,
                    LEFT_LUNG_COLOR,
                    LEFT_LUNG_TERMINOLOGY,
                ),
            ],
            extent_offset: [0; 3],
            extra_fields: Vec::new(),
        }
    }
}

/// Segments the lungs of a chest CT in Hounsfield units (see the module documentation).
///
/// # Errors
/// [`EffectError::Input`] when the volume does not look like a chest CT (no voxel below
/// -500 HU, too little air inside the body), with what was found;
/// [`EffectError::Cancelled`] when `control` is cancelled.
pub fn segment_lungs(
    ct: &AnyVolume,
    options: &LungOptions,
    control: &Control,
) -> Result<Lungs, EffectError> {
    let geometry = *ct.geometry();
    let frame = Frame::of(&geometry);
    control.progress(0.0, "reading intensities");
    let hu = frame.hounsfield(ct);
    control.check()?;
    let mut warnings = Vec::new();
    let shape = hu.dim();
    let voxel_ml = geometry.spacing.iter().product::<f64>() / 1000.0;

    // 1. Threshold.
    let histogram = Histogram::of(hu.view());
    if histogram.below(-500) == 0 {
        let (lo, hi) = ct.min_max().unwrap_or((0.0, 0.0));
        return Err(EffectError::Input(format!(
            "does not look like a CT in Hounsfield units: no voxel below -500 HU (values \
             {lo}..{hi}); lung segmentation needs a chest CT"
        )));
    }
    let threshold_hu = match options.threshold_hu {
        Some(t) => t,
        None => {
            let raw = histogram.optimal_threshold();
            let (lo, hi) = THRESHOLD_RANGE_HU;
            let t = raw.clamp(lo, hi);
            if t != raw {
                warnings.push(format!(
                    "the optimal air/tissue threshold {raw:.0} HU is unusual; {t:.0} HU was used"
                ));
            }
            t
        }
    };
    let below = threshold_hu.ceil().clamp(i16::MIN as f64, i16::MAX as f64) as i16;
    control.progress(0.1, "finding the air inside the body");

    // 2. Air inside the body, slice by slice.
    let mut inside = Array3::<u8>::zeros(shape);
    Zip::from(inside.axis_iter_mut(Axis(0)))
        .and(hu.axis_iter(Axis(0)))
        .par_for_each(|out, slice| inside_air(slice, below, out));
    control.check()?;

    // 3. Lung candidates.
    control.progress(0.3, "selecting the lungs");
    let components = label_runs(inside.view(), |&v| v != 0, Connectivity::Faces6);
    let gas = pure_air_voxels(&components, hu.view());
    let stats: Vec<ComponentStats> = ComponentStats::of(&components)
        .into_iter()
        .filter(|s| (gas[s.label as usize - 1] as f64) < GAS_SHARE * s.voxels as f64)
        .collect();
    let largest_ml = stats.iter().map(|s| s.voxels).max().unwrap_or(0) as f64 * voxel_ml;
    let Some(largest) = stats
        .iter()
        .max_by_key(|s| s.voxels)
        .filter(|_| largest_ml >= MIN_LUNGS_ML)
    else {
        return Err(EffectError::Input(format!(
            "no lungs found: the largest lung-like air region inside the body holds \
             {largest_ml:.0} mL (at least {MIN_LUNGS_ML:.0} mL expected); is this a chest CT? \
             (an abdominal scan shows only the lung bases)"
        )));
    };
    let mut chosen = vec![largest.label];
    if let Some(second) = stats
        .iter()
        .filter(|s| s.label != largest.label)
        .filter(|s| s.voxels as f64 >= SECOND_LUNG_SHARE * largest.voxels as f64)
        .filter(|s| s.height_overlap(largest) >= 0.5)
        .max_by_key(|s| s.voxels)
    {
        chosen.push(second.label);
    }
    drop(inside);
    let mut lungs = Array3::<u8>::zeros(shape);
    components.paint(&mut lungs, |l| chosen.contains(&l).then_some(1));
    drop(components);
    control.check()?;
    // The rest works on the lungs' bounding box.
    let Some(bbox) = nonzero_box(lungs.view(), 1) else {
        return Err(EffectError::Internal("the chosen lungs are empty".into()));
    };
    let crop = s![
        bbox[0].0..bbox[0].1,
        bbox[1].0..bbox[1].1,
        bbox[2].0..bbox[2].1
    ];
    let mut lungs = lungs.slice(crop).to_owned();
    let midline = body_midline(hu.view()) - bbox[2].0 as f64;
    drop(hu);

    // 4. Airways.
    control.progress(0.45, "following the airways");
    let mut airways_ml = 0.0;
    if options.exclude_airways {
        match track_airways(lungs.view(), &frame, control)? {
            Some(airways) => {
                let mut count = 0u64;
                Zip::from(&mut lungs).and(&airways).for_each(|l, &a| {
                    if a != 0 && *l != 0 {
                        *l = 0;
                        count += 1;
                    }
                });
                airways_ml = count as f64 * voxel_ml;
            }
            None => warnings.push(
                "the trachea was not found in the upper slices: airways are not excluded".into(),
            ),
        }
    }

    // 5. Left and right.
    control.progress(0.6, "separating left and right");
    let mut labels = separate(&lungs, &frame, midline, voxel_ml, &mut warnings, control)?;
    drop(lungs);

    // 6. Holes.
    if options.fill_holes {
        control.progress(0.85, "filling holes");
        labels
            .axis_iter_mut(Axis(0))
            .into_par_iter()
            .for_each(|slice| fill_holes_2d(slice));
    }
    control.check()?;

    let mut counts = [0u64; 3];
    for &v in labels.iter() {
        counts[v.min(2) as usize] += 1;
    }
    let right_ml = counts[1] as f64 * voxel_ml;
    let left_ml = counts[2] as f64 * voxel_ml;
    for (name, ml) in [("right", right_ml), ("left", left_ml)] {
        let (lo, hi) = PLAUSIBLE_LUNG_ML;
        if ml == 0.0 {
            warnings.push(format!("no {name} lung found"));
        } else if !(lo..=hi).contains(&ml) {
            warnings.push(format!(
                "the {name} lung holds {:.2} L (usually {:.1} to {:.1} L): check the scan's \
                 extent and the result",
                ml / 1000.0,
                lo / 1000.0,
                hi / 1000.0
            ));
        }
    }
    let mut full = Array3::<u16>::zeros(shape);
    full.slice_mut(crop).assign(&labels);
    drop(labels);
    control.progress(1.0, "done");
    Ok(Lungs {
        labels: Volume::new(frame.to_original(full), geometry),
        right_ml,
        left_ml,
        airways_ml,
        threshold_hu,
        warnings,
    })
}

/// The array axes nearest to the patient's axes, and which way they point.
///
/// In the canonical order axis 0 runs along the body (slices are axial), axis 1 front to
/// back and axis 2 side to side.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// `perm[c]` = the array axis (0 = k, 1 = j, 2 = i) playing canonical axis `c`.
    perm: [usize; 3],
    /// Spacing (mm) along the canonical axes.
    spacing: [f64; 3],
    /// True when a larger index along canonical axis 0 is more superior.
    superior_up: bool,
    /// True when a larger index along canonical axis 2 is more to the patient's left.
    left_up: bool,
}

impl Frame {
    fn of(g: &crate::volume::Geometry) -> Frame {
        // Array axis a is geometry axis 2 - a.
        let dir = |a: usize| g.axis(2 - a);
        let mut free = vec![0usize, 1, 2];
        let mut perm = [0usize; 3];
        // LPS components: z (axial), then y (anterior-posterior), then x (left-right).
        for (c, lps) in [(0usize, 2usize), (1, 1), (2, 0)] {
            let best = *free
                .iter()
                .max_by(|&&a, &&b| dir(a)[lps].abs().total_cmp(&dir(b)[lps].abs()))
                .unwrap_or(&0);
            perm[c] = best;
            free.retain(|&a| a != best);
        }
        Frame {
            perm,
            spacing: [
                g.spacing[2 - perm[0]],
                g.spacing[2 - perm[1]],
                g.spacing[2 - perm[2]],
            ],
            superior_up: dir(perm[0])[2] >= 0.0,
            left_up: dir(perm[2])[0] >= 0.0,
        }
    }

    /// The CT's voxels in canonical order as whole HU (rounded, saturated to `i16`).
    fn hounsfield(&self, ct: &AnyVolume) -> Array3<i16> {
        crate::with_volume!(ct, v => {
            let view = v.data.view().permuted_axes(self.perm);
            let mut out = Array3::<i16>::zeros(view.dim());
            Zip::from(&mut out)
                .and(&view)
                .par_for_each(|o, &x| *o = i16::from_f64(x.to_f64()));
            out
        })
    }

    fn to_original<T: Clone>(self, a: Array3<T>) -> Array3<T> {
        if self.perm == [0, 1, 2] {
            return a;
        }
        let mut inverse = [0usize; 3];
        for (c, &axis) in self.perm.iter().enumerate() {
            inverse[axis] = c;
        }
        a.view()
            .permuted_axes(inverse)
            .as_standard_layout()
            .into_owned()
    }

    /// Area of one pixel of an axial slice (mm²).
    fn pixel_mm2(&self) -> f64 {
        self.spacing[1] * self.spacing[2]
    }
}

/// Counts of voxel values from -1100 HU up (padding below is left out).
struct Histogram {
    /// `counts[v + 1100]` for v in -1100..=3000; values above 3000 in the last bin.
    counts: Vec<u64>,
}

impl Histogram {
    const LOW: i32 = PADDING_BELOW_HU as i32;
    const HIGH: i32 = 3000;

    fn of(hu: ArrayView3<i16>) -> Histogram {
        let bins = (Self::HIGH - Self::LOW + 1) as usize;
        let counts = hu
            .axis_iter(Axis(0))
            .into_par_iter()
            .fold(
                || vec![0u64; bins],
                |mut c, slice| {
                    for &v in slice.iter() {
                        let v = v as i32;
                        if v >= Self::LOW {
                            c[(v.min(Self::HIGH) - Self::LOW) as usize] += 1;
                        }
                    }
                    c
                },
            )
            .reduce(
                || vec![0u64; bins],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        Histogram { counts }
    }

    /// Number of counted voxels below `hu`.
    fn below(&self, hu: i32) -> u64 {
        let end = (hu - Self::LOW).clamp(0, self.counts.len() as i32) as usize;
        self.counts[..end].iter().sum()
    }

    /// Hu's iterative threshold: the midpoint of the means below and above, to a fixed
    /// point, starting at -500 HU.
    fn optimal_threshold(&self) -> f64 {
        let mut t = -500.0f64;
        for _ in 0..100 {
            let (mut n0, mut s0, mut n1, mut s1) = (0u64, 0.0f64, 0u64, 0.0f64);
            for (b, &c) in self.counts.iter().enumerate() {
                let v = (b as i32 + Self::LOW) as f64;
                if v < t {
                    n0 += c;
                    s0 += c as f64 * v;
                } else {
                    n1 += c;
                    s1 += c as f64 * v;
                }
            }
            if n0 == 0 || n1 == 0 {
                break;
            }
            let next = (s0 / n0 as f64 + s1 / n1 as f64) / 2.0;
            if (next - t).abs() < 0.5 {
                return next;
            }
            t = next;
        }
        t
    }
}

/// Marks the pixels of one slice that are air (below `below_hu`) and not 4-connected
/// through air to the slice's border.
fn inside_air(hu: ArrayView2<i16>, below_hu: i16, mut out: ArrayViewMut2<u8>) {
    let inside = enclosed(hu.insert_axis(Axis(0)), |&v| v < below_hu);
    inside.paint_into(&mut out, 1);
}

/// Fills the holes of labels 1 and 2 in one slice: background pixels not 4-connected
/// through background (or the other lung) to the border of the lung's bounding box take
/// the label that encloses them. The right lung is filled first; the left lung's holes
/// never take right-lung pixels.
fn fill_holes_2d(mut slice: ArrayViewMut2<u16>) {
    for label in [RIGHT_LUNG, LEFT_LUNG] {
        // Bounding box of the lung, one pixel wider on each side (clipped): anything
        // outside it reaches the border.
        let (nr, nc) = slice.dim();
        let (mut r0, mut r1, mut c0, mut c1) = (usize::MAX, 0, usize::MAX, 0);
        for (r, row) in slice.rows().into_iter().enumerate() {
            if let Some(c) = row.iter().position(|&v| v == label) {
                let last = row.iter().rposition(|&v| v == label).unwrap_or(c);
                r0 = r0.min(r);
                r1 = r;
                c0 = c0.min(c);
                c1 = c1.max(last);
            }
        }
        if r0 == usize::MAX {
            continue;
        }
        let (r0, c0) = (r0.saturating_sub(1), c0.saturating_sub(1));
        let (r1, c1) = ((r1 + 1).min(nr - 1), (c1 + 1).min(nc - 1));
        let mut window = slice.slice_mut(s![r0..=r1, c0..=c1]);
        let holes = enclosed(window.view().insert_axis(Axis(0)), |&v| v != label);
        for &(start, len) in &holes.runs {
            let (row, first) = (start / holes.columns, start % holes.columns);
            window
                .slice_mut(s![row, first..first + len])
                .iter_mut()
                .filter(|v| **v == 0)
                .for_each(|v| *v = label);
        }
    }
}

/// The mean column (canonical axis 2) of the voxels above -200 HU: the body's
/// left-right middle (soft tissue and bone; the table is centred under the patient).
fn body_midline(hu: ArrayView3<i16>) -> f64 {
    let (sum, count) = hu
        .axis_iter(Axis(0))
        .into_par_iter()
        .map(|slice| {
            let mut sum = 0.0f64;
            let mut count = 0u64;
            for row in slice.rows() {
                for (c, &v) in row.iter().enumerate() {
                    if v > -200 {
                        sum += c as f64;
                        count += 1;
                    }
                }
            }
            (sum, count)
        })
        .reduce(|| (0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    if count == 0 {
        (hu.dim().2 as f64 - 1.0) / 2.0
    } else {
        sum / count as f64
    }
}

/// Size, height range and side of each 3-D component.
#[derive(Debug, Clone, Copy)]
struct ComponentStats {
    label: u32,
    voxels: u64,
    /// First and last canonical slice holding the component.
    slices: (usize, usize),
    /// Sum of the voxels' canonical axis-2 (left-right) index.
    column_sum: f64,
}

impl ComponentStats {
    fn of(c: &Components) -> Vec<ComponentStats> {
        let (_, nj, ni) = c.shape;
        let mut stats: Vec<ComponentStats> = (0..c.sizes.len())
            .map(|l| ComponentStats {
                label: l as u32 + 1,
                voxels: c.sizes[l],
                slices: (usize::MAX, 0),
                column_sum: 0.0,
            })
            .collect();
        for run in &c.runs {
            let s = &mut stats[run.label as usize - 1];
            let slice = run.start / (nj * ni);
            s.slices = (s.slices.0.min(slice), s.slices.1.max(slice));
            let first = (run.start % ni) as f64;
            let len = run.len as f64;
            s.column_sum += len * (first + (len - 1.0) / 2.0);
        }
        stats
    }

    fn column(&self) -> f64 {
        self.column_sum / self.voxels.max(1) as f64
    }

    /// The share of this component's slices that `other` also spans.
    fn height_overlap(&self, other: &ComponentStats) -> f64 {
        let lo = self.slices.0.max(other.slices.0);
        let hi = self.slices.1.min(other.slices.1);
        if hi < lo {
            return 0.0;
        }
        (hi - lo + 1) as f64 / (self.slices.1 - self.slices.0 + 1) as f64
    }
}

/// For each component, the number of its voxels below [`PURE_AIR_HU`].
fn pure_air_voxels(c: &Components, hu: ArrayView3<i16>) -> Vec<u64> {
    let mut counts = vec![0u64; c.sizes.len()];
    let hu = hu.as_standard_layout();
    let Some(flat) = hu.as_slice() else {
        return counts;
    };
    for run in &c.runs {
        let voxels = &flat[run.start..run.start + run.len as usize];
        counts[run.label as usize - 1] +=
            voxels.iter().filter(|&&v| v < PURE_AIR_HU).count() as u64;
    }
    counts
}

/// One 2-D region of a slice, for airway tracking.
struct Region {
    /// Runs `(row, first column, length)`.
    runs: Vec<(usize, usize, usize)>,
    area: usize,
    column: f64,
    /// Bounding box (rows, columns).
    rows: (usize, usize),
    cols: (usize, usize),
}

impl Region {
    fn area(&self) -> usize {
        self.area
    }

    /// Writes the region's area into its pixels of `out`.
    fn paint(&self, out: &mut Array2<u32>) {
        for &(row, first, len) in &self.runs {
            out.slice_mut(s![row, first..first + len])
                .fill(self.area as u32);
        }
    }

    fn fill_ratio(&self) -> f64 {
        let h = self.rows.1 - self.rows.0 + 1;
        let w = self.cols.1 - self.cols.0 + 1;
        self.area() as f64 / (h * w) as f64
    }
}

/// The 4-connected regions of a slice's non-zero pixels.
fn regions(slice: ArrayView2<u8>) -> Vec<Region> {
    let c = label_runs(
        slice.insert_axis(Axis(0)),
        |&v| v != 0,
        Connectivity::Faces6,
    );
    let ni = c.shape.2;
    let mut out: Vec<Region> = (0..c.sizes.len())
        .map(|_| Region {
            runs: Vec::new(),
            area: 0,
            column: 0.0,
            rows: (usize::MAX, 0),
            cols: (usize::MAX, 0),
        })
        .collect();
    for run in &c.runs {
        let r = &mut out[run.label as usize - 1];
        let row = run.start / ni;
        let first = run.start % ni;
        let len = run.len as usize;
        r.runs.push((row, first, len));
        r.area += len;
        r.column += len as f64 * (first as f64 + (len as f64 - 1.0) / 2.0);
        r.rows = (r.rows.0.min(row), r.rows.1.max(row));
        r.cols = (
            r.cols.0.min(first),
            r.cols.1.max(first + run.len as usize - 1),
        );
    }
    for r in &mut out {
        r.column /= r.area.max(1) as f64;
    }
    out
}

/// The trachea and main bronchi inside `lungs` (canonical order), or `None` when no
/// trachea is found in the upper slices.
fn track_airways(
    lungs: ArrayView3<u8>,
    frame: &Frame,
    control: &Control,
) -> Result<Option<Array3<u8>>, EffectError> {
    let (ns, _, nc) = lungs.dim();
    let occupied: Vec<usize> = (0..ns)
        .filter(|&s| lungs.index_axis(Axis(0), s).iter().any(|&v| v != 0))
        .collect();
    let (Some(&first), Some(&last)) = (occupied.first(), occupied.last()) else {
        return Ok(None);
    };
    // Left-right extent of the lungs: the trachea lies near its middle.
    let (mut cmin, mut cmax) = (nc, 0);
    for s in first..=last {
        for row in lungs.index_axis(Axis(0), s).rows() {
            if let Some(c) = row.iter().position(|&v| v != 0) {
                cmin = cmin.min(c);
            }
            if let Some(c) = row.iter().rposition(|&v| v != 0) {
                cmax = cmax.max(c);
            }
        }
    }
    let centre = (cmin + cmax) as f64 / 2.0;
    let width = (cmax.saturating_sub(cmin) + 1) as f64;
    let px = frame.pixel_mm2();
    // Slices from the top of the lungs down.
    let order: Vec<usize> = if frame.superior_up {
        (first..=last).rev().collect()
    } else {
        (first..=last).collect()
    };
    let search = ((order.len() as f64) * 0.3).ceil() as usize;
    let mut airways = Array3::<u8>::zeros(lungs.dim());
    // Airway pixels of the slice above, each with the area of its region.
    let mut above: Option<Array2<u32>> = None;
    for (n, &s) in order.iter().enumerate() {
        control.check()?;
        let slice = lungs.index_axis(Axis(0), s);
        let found = regions(slice);
        let mut here = Array2::<u32>::zeros(slice.dim());
        let mut any = false;
        match &above {
            None => {
                if n >= search.max(1) {
                    return Ok(None);
                }
                let trachea = found
                    .iter()
                    .filter(|r| {
                        let a = r.area() as f64 * px;
                        a >= TRACHEA_AREA_MM2.0
                            && a <= TRACHEA_AREA_MM2.1
                            && r.fill_ratio() >= 0.4
                            && (r.column - centre).abs() <= 0.15 * width
                    })
                    .min_by(|a, b| {
                        (a.column - centre)
                            .abs()
                            .total_cmp(&(b.column - centre).abs())
                    });
                if let Some(r) = trachea {
                    r.paint(&mut here);
                    any = true;
                }
                if !any {
                    continue;
                }
            }
            Some(prev) => {
                for r in &found {
                    // Area of the airway regions above that this region touches.
                    let mut parents: Vec<u32> = r
                        .runs
                        .iter()
                        .flat_map(|&(row, first, len)| {
                            prev.slice(s![row, first..first + len]).to_vec()
                        })
                        .filter(|&a| a != 0)
                        .collect();
                    if parents.is_empty() {
                        continue;
                    }
                    parents.sort_unstable();
                    parents.dedup();
                    let parent_area: f64 = parents.iter().map(|&a| a as f64).sum::<f64>() * px;
                    let area = r.area() as f64 * px;
                    if area <= 2.5 * parent_area + 20.0 && area <= MAX_AIRWAY_AREA_MM2 {
                        r.paint(&mut here);
                        any = true;
                    }
                }
                if !any {
                    break;
                }
            }
        }
        Zip::from(airways.index_axis_mut(Axis(0), s))
            .and(&here)
            .for_each(|a, &h| *a = u8::from(h != 0));
        above = Some(here);
    }
    Ok(above.map(|_| airways))
}

/// Splits the lung mask (canonical order) into right (1) and left (2) lungs.
fn separate(
    lungs: &Array3<u8>,
    frame: &Frame,
    body_midline: f64,
    voxel_ml: f64,
    warnings: &mut Vec<String>,
    control: &Control,
) -> Result<Array3<u16>, EffectError> {
    let shape = lungs.dim();
    let components = label_runs(lungs.view(), |&v| v != 0, Connectivity::Faces6);
    let mut stats = ComponentStats::of(&components);
    stats.sort_by_key(|s| std::cmp::Reverse(s.voxels));
    let mut labels = Array3::<u16>::zeros(shape);
    let Some(largest) = stats.first().copied() else {
        return Ok(labels);
    };
    // Which side of the body a column is on: larger canonical column = patient's left
    // when `left_up`.
    let side_of = |column: f64, midline: f64| -> u16 {
        if (column > midline) == frame.left_up {
            LEFT_LUNG
        } else {
            RIGHT_LUNG
        }
    };
    let two = stats
        .get(1)
        .filter(|s| s.voxels as f64 >= SECOND_LUNG_SHARE * largest.voxels as f64)
        .copied();
    let mut core_columns: Vec<(u16, f64)> = Vec::new();
    if let Some(second) = two {
        let midline = (largest.column() + second.column()) / 2.0;
        let (a, b) = (
            side_of(largest.column(), midline),
            side_of(second.column(), midline),
        );
        components.paint(&mut labels, |l| {
            if l == largest.label {
                Some(a)
            } else if l == second.label {
                Some(b)
            } else {
                None
            }
        });
        core_columns.push((a, largest.column()));
        core_columns.push((b, second.column()));
    } else {
        let mut part = Array3::<u8>::zeros(shape);
        components.paint(&mut part, |l| (l == largest.label).then_some(1));
        match split_touching(&part, frame, control)? {
            Some((mut cores, columns)) => {
                let midline = (columns.0 + columns.1) / 2.0;
                let (a, b) = (side_of(columns.0, midline), side_of(columns.1, midline));
                cores.mapv_inplace(|v| match v {
                    1 => a,
                    2 => b,
                    _ => 0,
                });
                grow_inside(&mut cores, &part);
                labels = cores;
                core_columns.push((a, columns.0));
                core_columns.push((b, columns.1));
            }
            None => {
                let side = side_of(largest.column(), body_midline);
                warnings.push(format!(
                    "only one lung found (the {}); the other is missing or was not separated",
                    if side == RIGHT_LUNG { "right" } else { "left" }
                ));
                components.paint(&mut labels, |l| (l == largest.label).then_some(side));
                core_columns.push((side, largest.column()));
            }
        }
    }
    // Pieces cut off by the airway removal: to the lung on their side, if large enough.
    let midline = match core_columns.as_slice() {
        [a, b] => (a.1 + b.1) / 2.0,
        _ => body_midline,
    };
    let min_voxels = (MIN_PIECE_ML / voxel_ml).ceil() as u64;
    let taken: Vec<u32> = [Some(largest), two]
        .iter()
        .flatten()
        .map(|s| s.label)
        .collect();
    let pieces: Vec<(u32, u16)> = stats
        .iter()
        .filter(|s| !taken.contains(&s.label) && s.voxels >= min_voxels)
        .map(|s| (s.label, side_of(s.column(), midline)))
        .collect();
    if !pieces.is_empty() {
        let present: Vec<u16> = core_columns.iter().map(|c| c.0).collect();
        components.paint(&mut labels, |l| {
            pieces
                .iter()
                .find(|p| p.0 == l)
                .map(|p| p.1)
                .filter(|side| present.contains(side))
        });
    }
    Ok(labels)
}

/// Erodes one component that holds both lungs (canonical order) by a growing in-plane
/// distance until it falls into two large parts on either side of its middle. Returns
/// the two parts (labels 1 and 2) and their mean columns, or `None` when no erosion up
/// to 40 mm splits it.
fn split_touching(
    part: &Array3<u8>,
    frame: &Frame,
    control: &Control,
) -> Result<Option<Split>, EffectError> {
    let shape = part.dim();
    // Squared in-plane distance (mm²) of each lung voxel to the nearest non-lung pixel of
    // its slice, slice by slice.
    let spacing = [frame.spacing[2], frame.spacing[1], 1.0];
    let mut dist2 = Array3::<f32>::zeros(shape);
    let cancelled = || control.is_cancelled();
    let failed: Vec<DistanceError> = dist2
        .axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(part.axis_iter(Axis(0)).into_par_iter())
        .filter_map(|(mut out, slice)| {
            if !slice.iter().any(|&v| v != 0) {
                return None;
            }
            // Features: the pixels outside the lung; a slice full of lung measures to
            // just outside the slice, as if bordered by tissue.
            let (nr, nc) = slice.dim();
            let padded = padded_outside(slice);
            match squared_distance(
                padded.view().insert_axis(Axis(0)),
                spacing,
                [0; 3],
                &cancelled,
            ) {
                Ok(d) => {
                    out.assign(&d.slice(s![0, 1..nr + 1, 1..nc + 1]));
                    None
                }
                Err(e) => Some(e),
            }
        })
        .collect();
    if let Some(e) = failed.into_iter().next() {
        return Err(match e {
            DistanceError::Cancelled => EffectError::Cancelled,
            other => EffectError::Internal(other.to_string()),
        });
    }
    control.check()?;
    let step = frame.spacing[1].min(frame.spacing[2]);
    let mut r = step;
    while r <= 40.0 {
        control.check()?;
        let r2 = (r * r) as f32;
        let c = label_runs(dist2.view(), |&d| d > r2, Connectivity::Faces6);
        let mut st = ComponentStats::of(&c);
        st.sort_by_key(|s| std::cmp::Reverse(s.voxels));
        if let [a, b, ..] = st.as_slice() {
            let width = shape.2 as f64;
            if b.voxels as f64 >= 0.1 * a.voxels as f64
                && (a.column() - b.column()).abs() >= 0.1 * width
            {
                let mut cores = Array3::<u16>::zeros(shape);
                let (la, lb) = (a.label, b.label);
                c.paint(&mut cores, |l| {
                    if l == la {
                        Some(1)
                    } else if l == lb {
                        Some(2)
                    } else {
                        None
                    }
                });
                return Ok(Some((cores, (a.column(), b.column()))));
            }
        }
        r *= 1.25;
    }
    Ok(None)
}

/// Two lung cores (labels 1 and 2) and their mean columns.
type Split = (Array3<u16>, (f64, f64));

/// A slice's outside-lung pixels as features (1), with a one-pixel frame of features.
fn padded_outside(slice: ArrayView2<u8>) -> Array2<u8> {
    let (nr, nc) = slice.dim();
    let mut out = Array2::<u8>::ones((nr + 2, nc + 2));
    Zip::from(out.slice_mut(s![1..nr + 1, 1..nc + 1]))
        .and(&slice)
        .for_each(|o, &v| *o = u8::from(v == 0));
    out
}

/// Grows the labelled cores through `mask` breadth-first (6 neighbours), all cores at
/// once: each unlabelled mask voxel takes the label of the core that reaches it first.
fn grow_inside(labels: &mut Array3<u16>, mask: &Array3<u8>) {
    let (nk, nj, ni) = labels.dim();
    let (Some(flat), Some(m)) = (labels.as_slice_mut(), mask.as_slice()) else {
        return;
    };
    let mut queue: VecDeque<usize> = flat
        .iter()
        .enumerate()
        .filter(|(_, &v)| v != 0)
        .map(|(n, _)| n)
        .collect();
    let plane = nj * ni;
    while let Some(n) = queue.pop_front() {
        let v = flat[n];
        let (k, rem) = (n / plane, n % plane);
        let (j, i) = (rem / ni, rem % ni);
        let mut visit = |q: usize, flat: &mut [u16]| {
            if m[q] != 0 && flat[q] == 0 {
                flat[q] = v;
                queue.push_back(q);
            }
        };
        if i > 0 {
            visit(n - 1, flat);
        }
        if i + 1 < ni {
            visit(n + 1, flat);
        }
        if j > 0 {
            visit(n - ni, flat);
        }
        if j + 1 < nj {
            visit(n + ni, flat);
        }
        if k > 0 {
            visit(n - plane, flat);
        }
        if k + 1 < nk {
            visit(n + plane, flat);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Geometry;

    /// A synthetic chest: body of 40 HU in a -1000 HU field, two lungs of -850 HU, a
    /// trachea of -1000 HU joining them from the top, optionally touching in front.
    fn phantom(touching: bool) -> Volume<i16> {
        let (nk, nj, ni) = (40usize, 64usize, 80usize);
        let mut a = Array3::<i16>::from_elem((nk, nj, ni), -1000);
        for k in 0..nk {
            for j in 0..nj {
                for i in 0..ni {
                    let (y, x) = (j as f64 - 32.0, i as f64 - 40.0);
                    if (x / 36.0).powi(2) + (y / 28.0).powi(2) <= 1.0 {
                        a[[k, j, i]] = 40;
                    }
                    // Lungs: two ellipses from slice 4 to 33, centred at x = ±16.
                    if (4..34).contains(&k) {
                        for cx in [-16.0, 16.0] {
                            if ((x - cx) / 12.0).powi(2) + (y / 18.0).powi(2) <= 1.0 {
                                a[[k, j, i]] = -850;
                            }
                        }
                        // A vessel inside each lung.
                        if (x.abs() - 16.0).abs() <= 1.0 && y.abs() <= 1.0 {
                            a[[k, j, i]] = 30;
                        }
                        if touching
                            && (20..26).contains(&k)
                            && x.abs() <= 5.0
                            && (-14.0..-8.0).contains(&y)
                        {
                            a[[k, j, i]] = -850;
                        }
                    }
                    // Trachea from the top down to slice 28, then bronchi to each lung.
                    if k >= 28 && x.abs() <= 2.0 && y.abs() <= 2.0 {
                        a[[k, j, i]] = -1000;
                    }
                    if (26..28).contains(&k) && x.abs() <= 6.0 && y.abs() <= 1.5 {
                        a[[k, j, i]] = -1000;
                    }
                }
            }
        }
        // i runs towards the patient's right (-x) as in Slicer's RAS-aligned CTs.
        let g = Geometry::from_axes(
            [0.0; 3],
            [1.5, 1.5, 2.5],
            [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        );
        Volume::new(a, g)
    }

    fn run(v: &Volume<i16>) -> Lungs {
        segment_lungs(
            &AnyVolume::I16(v.clone()),
            &LungOptions::default(),
            &Control::none(),
        )
        .unwrap()
    }

    #[test]
    fn finds_both_lungs_on_the_right_sides_without_the_trachea() {
        let v = phantom(false);
        let lungs = run(&v);
        let l = &lungs.labels.data;
        // i < 40 is x > 0 in LPS: the patient's left.
        assert_eq!(l[[15, 40, 24]], LEFT_LUNG);
        assert_eq!(l[[15, 40, 56]], RIGHT_LUNG);
        // The vessels at the lungs' centres are filled in.
        assert_eq!(l[[15, 32, 24]], LEFT_LUNG);
        assert_eq!(l[[15, 32, 56]], RIGHT_LUNG);
        // Trachea voxels are not lung.
        assert_eq!(l[[35, 32, 40]], 0);
        assert_eq!(l[[30, 32, 40]], 0);
        assert!(lungs.right_ml > 0.0 && lungs.left_ml > 0.0);
        assert!((lungs.right_ml - lungs.left_ml).abs() / lungs.right_ml < 0.05);
        assert!(lungs.airways_ml > 0.0, "{lungs:?}");
    }

    #[test]
    fn touching_lungs_are_separated_at_the_junction() {
        let v = phantom(true);
        let lungs = run(&v);
        let l = &lungs.labels.data;
        let mut right = 0;
        let mut left = 0;
        for ((_, _, i), &v) in l.indexed_iter() {
            if v == RIGHT_LUNG {
                right += 1;
                assert!(i >= 34, "right lung voxel at i = {i}");
            }
            if v == LEFT_LUNG {
                left += 1;
                assert!(i <= 46, "left lung voxel at i = {i}");
            }
        }
        assert!(right > 0 && left > 0);
        assert!(lungs.warnings.iter().all(|w| !w.contains("only one")));
    }

    #[test]
    fn any_axis_order_gives_the_same_lungs() {
        let v = phantom(true);
        let lungs = run(&v);
        // The same image stored with k and i swapped (a sagittal-like storage).
        let g = v.geometry;
        let swapped = Volume::new(
            v.data
                .view()
                .permuted_axes([2, 1, 0])
                .as_standard_layout()
                .into_owned(),
            Geometry::from_axes(
                g.origin,
                [g.spacing[2], g.spacing[1], g.spacing[0]],
                [g.axis(2), g.axis(1), g.axis(0)],
            ),
        );
        let other = run(&swapped);
        let back = other.labels.data.view().permuted_axes([2, 1, 0]).to_owned();
        assert_eq!(back, lungs.labels.data);
    }

    #[test]
    fn a_single_lung_is_put_on_its_side_with_a_warning() {
        let mut v = phantom(false);
        // Remove the left lung (i < 40): it becomes tissue.
        for ((_, _, i), x) in v.data.indexed_iter_mut() {
            if i < 36 && *x == -850 {
                *x = 40;
            }
        }
        // Adult-sized voxels, so that one lung is above the 150 mL minimum.
        v.geometry.spacing = [3.0, 3.0, 5.0];
        let lungs = run(&v);
        assert!(lungs.right_ml > 0.0);
        assert_eq!(lungs.left_ml, 0.0);
        assert!(
            lungs.warnings.iter().any(|w| w.contains("only one lung")),
            "{:?}",
            lungs.warnings
        );
    }

    #[test]
    fn a_volume_without_air_is_refused_with_the_reason() {
        let mut v = phantom(false);
        v.data.mapv_inplace(|x| x + 2000);
        let e = segment_lungs(
            &AnyVolume::I16(v),
            &LungOptions::default(),
            &Control::none(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("Hounsfield"), "{e}");
    }

    #[test]
    fn a_body_without_lungs_is_refused() {
        let mut v = phantom(false);
        v.data.mapv_inplace(|x| if x == -850 { 40 } else { x });
        // Only the trachea is left: far below the lung volume.
        let e = segment_lungs(
            &AnyVolume::I16(v),
            &LungOptions::default(),
            &Control::none(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no lungs found"), "{e}");
    }

    #[test]
    fn the_optimal_threshold_lies_between_air_and_tissue() {
        let v = phantom(false);
        let h = Histogram::of(v.data.view());
        let t = h.optimal_threshold();
        assert!(t > -1000.0 && t < 40.0, "{t}");
    }

    #[test]
    fn cancelling_stops_the_pipeline() {
        let v = phantom(false);
        let control = Control::none();
        control.cancel();
        let e = segment_lungs(&AnyVolume::I16(v), &LungOptions::default(), &control).unwrap_err();
        assert!(matches!(e, EffectError::Cancelled));
    }

    #[test]
    fn holes_are_filled_per_lung_and_outside_stays_empty() {
        let mut s = Array2::<u16>::zeros((5, 7));
        for r in 1..4 {
            for c in 1..4 {
                s[[r, c]] = RIGHT_LUNG;
            }
        }
        s[[2, 2]] = 0;
        s[[2, 5]] = 0;
        fill_holes_2d(s.view_mut());
        assert_eq!(s[[2, 2]], RIGHT_LUNG);
        assert_eq!(s[[2, 5]], 0);
        assert_eq!(s[[0, 0]], 0);
    }
}
