//! Hollow: replace the selected segment by a shell of uniform thickness along its
//! boundary.
//!
//! Reference: Slicer's `SegmentEditorHollowEffect.py`, which runs `vtkITKImageMargin`
//! (ITK's `SignedMaurerDistanceMapImageFilter`, squared, signed, float32, in mm, then a
//! band threshold) with inner and outer margins; here [`super::margin::image_margin`]
//! computes the same band with segkit's distance kernel.
//!
//! The signed distance d is + the distance to the nearest segment voxel for voxels
//! outside the segment, 0 for segment voxels with a background voxel among their 26
//! neighbours (the boundary), and − the distance to the nearest boundary voxel for the
//! other segment voxels. With t = `shell_thickness_mm` and v = the smallest voxel
//! spacing, the shell is the voxels with
//! - `INSIDE_SURFACE` (the segment is the shell's inside): 0.1 v ≤ d ≤ t + 0.1 v, outside
//!   the segment;
//! - `MEDIAL_SURFACE`: −t/2 + v/2 ≤ d ≤ t/2;
//! - `OUTSIDE_SURFACE` (the segment is the shell's outside): −t + v ≤ d ≤ 0, inside it.
//!
//! Both ends are inclusive and compared as ITK compares them (float32 squared distances
//! against `(m ∓ ε)·|m ∓ ε|`), so ties fall as in Slicer. The image border is not
//! background: a segment touching it has no boundary there, and no shell. The result is
//! written with mode Set; with `apply_to_all_visible_segments`, each visible segment is
//! hollowed on its own, in segment order.
//!
//! `OUTSIDE_SURFACE` thinner than v, or `MEDIAL_SURFACE` thinner than v/2, makes an empty
//! band (lower end above the upper end): ITK throws there and Slicer writes an undefined
//! result; segkit refuses the thickness instead, naming the smallest one accepted.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::effects::hollow::{hollow, ShellMode};
//! // A 5-voxel segment in a row of 1 mm voxels; a 1 mm shell inside its surface.
//! let seg = Array3::from_shape_vec((1, 1, 9), vec![0u8, 0, 1, 1, 1, 1, 1, 0, 0]).unwrap();
//! let out = hollow(seg.view(), [1.0; 3], 1.0, ShellMode::OutsideSurface, &|| false).unwrap();
//! assert_eq!(out.as_slice().unwrap(), &[0, 0, 1, 0, 0, 0, 1, 0, 0]);
//! ```

use super::margin::{image_margin, per_segment, MAX_DISTANCE_MM};
use super::schema::{ChoiceSpec, EffectSpec, Input, ParamSpec, ParamValues};
use super::{Effect, EffectError, EffectOutput, EffectRequest};
use ndarray::{Array3, ArrayView3};

/// Where the segment's surface lies in the shell (Slicer's `ShellMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShellMode {
    /// The surface is the shell's inside: the shell grows outward from the segment.
    #[default]
    InsideSurface,
    /// The surface runs through the middle of the shell.
    MedialSurface,
    /// The surface is the shell's outside: the shell lies inside the segment.
    OutsideSurface,
}

impl ShellMode {
    /// All modes, in Slicer's order.
    pub const ALL: [ShellMode; 3] = [
        ShellMode::InsideSurface,
        ShellMode::MedialSurface,
        ShellMode::OutsideSurface,
    ];

    /// Slicer's parameter value.
    pub fn slicer_name(self) -> &'static str {
        match self {
            ShellMode::InsideSurface => "INSIDE_SURFACE",
            ShellMode::MedialSurface => "MEDIAL_SURFACE",
            ShellMode::OutsideSurface => "OUTSIDE_SURFACE",
        }
    }

    /// The mode Slicer names `name`.
    pub fn from_slicer_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.slicer_name() == name)
    }

    /// `(inner, outer)` signed distances in mm of the shell for thickness `t` and smallest
    /// spacing `v`, computed as Slicer computes them.
    pub fn band_mm(self, t: f64, v: f64) -> (f64, f64) {
        match self {
            ShellMode::MedialSurface => (-0.5 * t + 0.5 * v, 0.5 * t),
            ShellMode::InsideSurface => (0.0 + 0.1 * v, t + 0.1 * v),
            ShellMode::OutsideSurface => (-t + v, 0.0),
        }
    }
}

/// Parameters of the Hollow effect; `Default` gives Slicer's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HollowParams {
    /// `ShellThicknessMm`, default 3 mm.
    pub shell_thickness_mm: f64,
    /// `ShellMode`, default `INSIDE_SURFACE`.
    pub shell_mode: ShellMode,
    /// `ApplyToAllVisibleSegments`: hollow every visible segment (default off).
    pub apply_to_all_visible_segments: bool,
}

impl HollowParams {
    /// The parameters from checked values (given or the schema's defaults).
    pub fn from_values(v: &ParamValues) -> Result<Self, EffectError> {
        Ok(HollowParams {
            shell_thickness_mm: v.double("ShellThicknessMm")?.abs(),
            shell_mode: v.choice("ShellMode", ShellMode::from_slicer_name)?,
            apply_to_all_visible_segments: v.boolean("ApplyToAllVisibleSegments")?,
        })
    }
}

impl Default for HollowParams {
    /// Slicer's defaults, as the schema states them.
    fn default() -> Self {
        Self::from_values(&ParamValues::defaults(&Hollow.spec()))
            .expect("the Hollow schema's defaults parse")
    }
}

/// The shell of one segment; `spacing_ijk` in mm. See the module documentation for the
/// bands, ties and the border. `cancelled` is polled between passes.
///
/// # Errors
/// [`EffectError::Parameter`] when the band is empty (see the module documentation),
/// [`EffectError::Cancelled`], or [`EffectError::Input`] for a bad spacing.
pub fn hollow(
    segment: ArrayView3<u8>,
    spacing_ijk: [f64; 3],
    shell_thickness_mm: f64,
    shell_mode: ShellMode,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Array3<u8>, EffectError> {
    let voxel = spacing_ijk.iter().copied().fold(f64::INFINITY, f64::min);
    let (inner, outer) = shell_mode.band_mm(shell_thickness_mm, voxel);
    if inner > outer {
        let minimum = match shell_mode {
            ShellMode::MedialSurface => 0.5 * voxel,
            _ => voxel,
        };
        return Err(EffectError::Parameter {
            name: "ShellThicknessMm".into(),
            reason: format!(
                "{} needs a shell of at least {minimum} mm with {voxel} mm voxels; got {shell_thickness_mm}",
                shell_mode.slicer_name()
            ),
        });
    }
    image_margin(segment, spacing_ijk, Some(inner), outer, cancelled)
}

/// The Hollow effect in the catalog.
pub struct Hollow;

impl Effect for Hollow {
    fn spec(&self) -> EffectSpec {
        let modes = vec![
            ChoiceSpec::new(
                "INSIDE_SURFACE",
                "Inside surface",
                "The segment's surface is the inside of the shell: the shell lies outside the segment.",
            ),
            ChoiceSpec::new(
                "MEDIAL_SURFACE",
                "Medial surface",
                "The segment's surface runs through the middle of the shell.",
            ),
            ChoiceSpec::new(
                "OUTSIDE_SURFACE",
                "Outside surface",
                "The segment's surface is the outside of the shell: the shell lies inside the segment.",
            ),
        ];
        let mode = ParamSpec::choice(
            "ShellMode",
            "Use current segment as",
            modes,
            "INSIDE_SURFACE",
        );
        let thickness = ParamSpec::double("ShellThicknessMm", "Shell thickness", "3")
            .help(
                "Thickness of the hollow shell. Slicer's Apply button is off while it is \
                 below one voxel along any axis.",
            )
            .range(0.0, MAX_DISTANCE_MM)
            .step(1.0)
            .unit("mm");
        let all = ParamSpec::boolean(
            "ApplyToAllVisibleSegments",
            "Apply to visible segments",
            "0",
        )
        .help("Hollow every visible segment, one after the other in segment order.");
        let mut spec = EffectSpec::new(
            "Hollow",
            "hollow",
            "Hollow",
            "Make the selected segment hollow by replacing it with a uniform-thickness shell defined by its boundary.",
        );
        // The visible segments are read with `ApplyToAllVisibleSegments`.
        spec.inputs = vec![Input::SelectedSegment, Input::VisibleSegments];
        spec.params = vec![mode, thickness, all];
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let p = HollowParams::from_values(request.params)?;
        let spacing = request.spacing_ijk();
        let cancelled = || request.control.is_cancelled();
        per_segment(request, "Hollow", p.apply_to_all_visible_segments, |seg| {
            hollow(seg, spacing, p.shell_thickness_mm, p.shell_mode, &cancelled)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;

    fn never() -> bool {
        false
    }

    fn count(a: &Array3<u8>) -> usize {
        a.iter().filter(|&&v| v != 0).count()
    }

    /// A 5x5x5 block in a 9x11x11 image of 1 mm voxels: 2 voxels of room along k, 3
    /// along j and i.
    fn block() -> Array3<u8> {
        let mut seg = Array3::<u8>::zeros((9, 11, 11));
        seg.slice_mut(s![2..7, 3..8, 3..8]).fill(1);
        seg
    }

    #[test]
    fn inside_surface_shell_lies_outside_the_segment() {
        let seg = block();
        // t = 1 mm: d in [0.1, 1.1]: the face neighbours of the block (distance 1), not
        // its edge or corner neighbours (sqrt 2, sqrt 3).
        let out = hollow(seg.view(), [1.0; 3], 1.0, ShellMode::InsideSurface, &never).unwrap();
        assert!(out.iter().zip(seg.iter()).all(|(&o, &v)| o == 0 || v == 0));
        assert_eq!(count(&out), 6 * 25);
        // t = 2 mm: d <= 2.1 adds edges (sqrt 2) and corners (sqrt 3) at one voxel and
        // the faces at two voxels.
        let out = hollow(seg.view(), [1.0; 3], 2.0, ShellMode::InsideSurface, &never).unwrap();
        assert_eq!(count(&out), 7 * 7 * 7 - 125 + 6 * 25);
    }

    #[test]
    fn outside_surface_shell_lies_inside_the_segment() {
        let seg = block();
        // t = 1 mm = one voxel: d in [0, 0]: the 98 boundary voxels of the block.
        let out = hollow(seg.view(), [1.0; 3], 1.0, ShellMode::OutsideSurface, &never).unwrap();
        assert_eq!(count(&out), 125 - 27);
        // t = 2 mm: d in [-1, 0]: everything but the centre voxel.
        let out = hollow(seg.view(), [1.0; 3], 2.0, ShellMode::OutsideSurface, &never).unwrap();
        assert_eq!(count(&out), 124);
        assert_eq!(out[[4, 5, 5]], 0);
    }

    #[test]
    fn medial_surface_straddles_the_boundary() {
        let seg = block();
        // t = 2 mm: d in [-0.5, 1]: the boundary and the face neighbours outside.
        let out = hollow(seg.view(), [1.0; 3], 2.0, ShellMode::MedialSurface, &never).unwrap();
        assert_eq!(count(&out), 98 + 6 * 25);
    }

    #[test]
    fn the_image_border_is_not_a_surface() {
        // A slab filling the image along i and j: its only boundary is along k.
        let mut seg = Array3::<u8>::zeros((5, 3, 3));
        seg.slice_mut(s![0..3, .., ..]).fill(1);
        let out = hollow(seg.view(), [1.0; 3], 1.0, ShellMode::OutsideSurface, &never).unwrap();
        assert_eq!(count(&out), 9);
        assert!(out.slice(s![2, .., ..]).iter().all(|&v| v == 1));
    }

    #[test]
    fn the_smallest_spacing_sets_the_band() {
        // 0.5 x 1 x 2 mm voxels: v = 0.5; OUTSIDE with t = 0.5 is the boundary only.
        let seg = block();
        let out = hollow(
            seg.view(),
            [0.5, 1.0, 2.0],
            0.5,
            ShellMode::OutsideSurface,
            &never,
        )
        .unwrap();
        assert_eq!(count(&out), 98);
    }

    #[test]
    fn a_shell_thinner_than_a_voxel_is_refused() {
        let seg = block();
        let e = hollow(seg.view(), [1.0; 3], 0.5, ShellMode::OutsideSurface, &never)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ShellThicknessMm") && e.contains("at least 1 mm"),
            "{e}"
        );
        let e = hollow(seg.view(), [1.0; 3], 0.4, ShellMode::MedialSurface, &never).unwrap_err();
        assert!(e.to_string().contains("at least 0.5 mm"), "{e}");
        // INSIDE_SURFACE always has a band (t = 0 keeps the voxels at exactly 0.1 v).
        assert!(hollow(seg.view(), [1.0; 3], 0.0, ShellMode::InsideSurface, &never).is_ok());
    }

    #[test]
    fn empty_segment_gives_no_shell() {
        let seg = Array3::<u8>::zeros((3, 3, 3));
        for mode in ShellMode::ALL {
            let out = hollow(seg.view(), [1.0; 3], 3.0, mode, &never).unwrap();
            assert_eq!(count(&out), 0);
        }
    }

    #[test]
    fn defaults_are_slicers() {
        let p = HollowParams::default();
        assert_eq!(p.shell_thickness_mm, 3.0);
        assert_eq!(p.shell_mode, ShellMode::InsideSurface);
        assert!(!p.apply_to_all_visible_segments);
    }
}
