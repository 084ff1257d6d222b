//! Segment from boundary points: the selected segment becomes the structure whose
//! boundary passes through the given points, ideally its six extreme points (NVIDIA
//! AIAA's "Segment from boundary points" in Slicer, without a model server). The
//! algorithm is [`crate::auto::boundary`]: a box around the points, inside seeds from the
//! points' centroid towards them, background on the box's faces and at intensities far
//! from the inside's, then Fast GrowCut (Grow from seeds' kernel) inside the box.
//!
//! The points come as a point list (a markups point list in Slicer, `--points FILE` or
//! repeated `--point-lps` on the command line). The result is written with mode Set into
//! the selected segment (a new one when none is selected), so running it again replaces
//! the structure; masking applies as for any effect.

use super::schema::{EffectSpec, Input, ParamSpec, ParamValues};
use super::{Effect, EffectError, EffectOutput, EffectRequest, ModificationMode, Modifier, Target};
use crate::auto::boundary::{segment_from_boundary_points, BoundaryOptions};

/// Parameters of Segment from boundary points; `Default` gives the schema's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundaryPointsParams {
    /// `MarginPercent`: the box is widened by this % of the points' extent on each side.
    pub margin_percent: f64,
    /// `SeedLocalityFactor`, as in Grow from seeds.
    pub seed_locality_factor: f64,
    /// `IntensitySeeds`: voxels with intensities far from the inside's are background.
    pub intensity_seeds: bool,
    /// `FillHoles`: fill the holes of the result in every slice.
    pub fill_holes: bool,
}

impl BoundaryPointsParams {
    /// The parameters from checked values (given or the schema's defaults).
    pub fn from_values(v: &ParamValues) -> Result<Self, EffectError> {
        Ok(BoundaryPointsParams {
            margin_percent: v.double("MarginPercent")?,
            seed_locality_factor: v.double("SeedLocalityFactor")?,
            intensity_seeds: v.boolean("IntensitySeeds")?,
            fill_holes: v.boolean("FillHoles")?,
        })
    }

    /// The algorithm's options.
    pub fn options(&self) -> BoundaryOptions {
        BoundaryOptions {
            margin_fraction: self.margin_percent / 100.0,
            seed_locality: self.seed_locality_factor,
            intensity_seeds: self.intensity_seeds,
            fill_holes: self.fill_holes,
        }
    }
}

impl Default for BoundaryPointsParams {
    fn default() -> Self {
        Self::from_values(&ParamValues::defaults(&BoundaryPoints.spec()))
            .expect("the Boundary points schema's defaults parse")
    }
}

/// The Segment from boundary points effect in the catalog.
pub struct BoundaryPoints;

impl Effect for BoundaryPoints {
    fn spec(&self) -> EffectSpec {
        let mut spec = EffectSpec::new(
            "Boundary points",
            "boundary-points",
            "Segment from boundary points",
            "Segments a structure from points placed on its boundary, best its six extreme \
             points (most right, left, anterior, posterior, superior, inferior): the \
             selected segment becomes the region grown from the points' centre inside \
             their box (Fast GrowCut). Place the points in a markups point list.",
        );
        spec.inputs = vec![Input::SourceVolume, Input::PointList];
        spec.long_running = true;
        spec.params = vec![
            ParamSpec::double("MarginPercent", "Box margin", "10")
                .range(0.0, 100.0)
                .step(1.0)
                .unit("%")
                .help(
                    "The box around the points is widened by this part of its size on \
                     every side (at least 3 voxels); its faces are background.",
                ),
            ParamSpec::double("SeedLocalityFactor", "Seed locality", "0")
                .range(0.0, 10.0)
                .step(0.1)
                .help("As in Grow from seeds: added cost per mm of path."),
            ParamSpec::boolean("IntensitySeeds", "Intensity background", "1").help(
                "Voxels whose intensity is far from the structure's (as sampled between the \
                 points) are background.",
            ),
            ParamSpec::boolean("FillHoles", "Fill holes", "1")
                .help("Fill the holes of the result in every slice."),
        ];
        spec.reported = vec![
            ("volume_ml", "Volume of the structure (mL)."),
            ("voxels", "Voxels of the structure."),
        ];
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let source = request.source("Segment from boundary points")?;
        let params = BoundaryPointsParams::from_values(request.params)?;
        let out = segment_from_boundary_points(
            source,
            request.points_kji,
            &params.options(),
            request.control,
        )?;
        let voxel_ml = request.geometry.spacing.iter().product::<f64>() / 1000.0;
        Ok(EffectOutput {
            modifiers: vec![Modifier {
                target: Target::Selected,
                mode: ModificationMode::Set,
                mask: out.mask,
                bypass_masking: false,
                overwrite: None,
            }],
            reported: vec![
                ("volume_ml".into(), out.voxels as f64 * voxel_ml),
                ("voxels".into(), out.voxels as f64),
            ],
            volumes: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::effects::catalog::tests::run_on;
    use crate::effects::{ModificationMode, Target};
    use crate::volume::{AnyVolume, Geometry, Volume};
    use ndarray::Array3;

    #[test]
    fn the_selected_segment_is_set_to_the_cube_between_the_points() {
        let data = Array3::from_shape_fn((20, 20, 20), |(k, j, i)| {
            if (6..=13).contains(&k) && (6..=13).contains(&j) && (6..=13).contains(&i) {
                300i16
            } else {
                0
            }
        });
        let source: AnyVolume = Volume::new(data.clone(), Geometry::default()).into();
        let points = [
            [6, 10, 10],
            [13, 10, 10],
            [10, 6, 10],
            [10, 13, 10],
            [10, 10, 6],
            [10, 10, 13],
        ];
        let out = run_on("boundary-points", Some(&source), &[], None, &points, &[]).unwrap();
        let m = &out.modifiers[0];
        assert_eq!(
            (&m.target, m.mode),
            (&Target::Selected, ModificationMode::Set)
        );
        assert_eq!(m.mask, data.mapv(|v| u8::from(v == 300)));
        assert_eq!(out.reported[1], ("voxels".to_string(), 512.0));
        let err = run_on(
            "boundary-points",
            Some(&source),
            &[],
            None,
            &points[..1],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("at least 2 distinct points"), "{err}");
        let err = run_on("boundary-points", None, &[], None, &points, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("source volume"), "{err}");
    }
}
