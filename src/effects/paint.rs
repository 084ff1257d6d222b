//! Paint and Erase: stamp a brush at each point of a stroke.
//!
//! Reference: Slicer's `qSlicerSegmentEditorPaintEffect.cxx` and
//! `qSlicerSegmentEditorEraseEffect.cxx`. Slicer builds the brush once as a polygon mesh
//! around the origin: a `vtkCylinderSource` of radius d/2 with 32 sides, one slice thick
//! (the 2-D brush), or a `vtkSphereSource` of radius d/2 with 32 x 32 facets (the sphere
//! brush). It rasterises that mesh in voxel units with `vtkPolyDataToImageStencil` (a
//! voxel is in when its centre is inside the mesh), then ORs the same stamp into the
//! modifier at each stroke point rounded to the nearest voxel. Paint writes the result
//! with mode Add; Erase with Remove, or RemoveAll when `EraseAllSegments` is on.
//!
//! The stamp here is the same polyhedron tested exactly: a voxel offset is in when its
//! centre, in mm from the centre voxel's, lies inside (or on) every face of the mesh.
//! Ties (a mesh vertex exactly on a voxel centre, which happens on the lattice axes when
//! `d/2` is a multiple of the spacing) follow Slicer's rasteriser as measured: the 2-D
//! brush on a K slice keeps all of them; the sphere (poles along j) drops its equator's
//! vertices on i and k and keeps the poles; see `dropped_axis_vertices`.
//! The mesh is inscribed in the ideal disk or ball, so it is a little smaller than
//! "within d/2": for a 100 mm sphere on 1 mm voxels 4244 of 523305 voxels of the ideal ball
//! are outside the mesh. Measured against Slicer's own rasterisation (parity tests):
//! - 2-D brush on the K slice, and the sphere: identical for the diameters tried;
//! - 2-D brush on the I or J slice: the mesh's vertices that lie exactly on a K slicing
//!   plane are in here; Slicer's rasteriser leaves out one or both of them (1 or 2 voxels).
//!
//! Headless painting has no view, so the 2-D brush's slice is a parameter,
//! `BrushSliceAxis`: `K` (default; the axial view of an axial scan), `J` or `I`. The brush
//! is then one voxel thick along that axis. The sphere's poles point along the view's
//! vertical axis, as in Slicer: J for a K slice, K for an I or J slice.
//!
//! Strokes: between consecutive points more than `0.2 d` apart, Slicer adds
//! `floor(distance / 0.2 d) - 1` evenly spaced points; so does segkit (in voxel
//! coordinates; a point exactly halfway between two voxels rounds up). The brush is cut
//! off at the image border.
//!
//! # Example
//! ```
//! use segkit::effects::paint::{brush_stamp, BrushShape};
//! // A 3 mm disk on 1 mm voxels: the centre and its 8 neighbours within 1.5 mm.
//! let stamp = brush_stamp(3.0, [1.0, 1.0, 1.0], BrushShape::Disk(segkit::effects::paint::SliceAxis::K));
//! assert_eq!(stamp.voxels(), 9);
//! ```

use super::schema::{ChoiceSpec, EffectSpec, Input, ParamSpec, ParamValues};
use super::{Effect, EffectError, EffectOutput, EffectRequest, ModificationMode, Modifier};
use ndarray::{s, Array3, Zip};
use std::f64::consts::PI;

/// Sides of Slicer's cylinder brush and facets of its sphere brush, around and pole to pole.
pub const BRUSH_RESOLUTION: usize = 32;
/// Slicer adds stroke points when two are more than this fraction of the diameter apart.
pub const MAXIMUM_POINT_DISTANCE_IN_STROKE: f64 = 0.2;

/// The slice a 2-D brush paints on: the axis it is normal to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SliceAxis {
    /// Constant k (axial for an axial scan).
    #[default]
    K,
    /// Constant j.
    J,
    /// Constant i.
    I,
}

impl SliceAxis {
    pub const ALL: [SliceAxis; 3] = [SliceAxis::K, SliceAxis::J, SliceAxis::I];

    /// The parameter value.
    pub fn name(self) -> &'static str {
        match self {
            SliceAxis::K => "K",
            SliceAxis::J => "J",
            SliceAxis::I => "I",
        }
    }

    /// The axis named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Index in `[k, j, i]` order.
    fn kji(self) -> usize {
        match self {
            SliceAxis::K => 0,
            SliceAxis::J => 1,
            SliceAxis::I => 2,
        }
    }
}

/// The brush's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrushShape {
    /// Slicer's 2-D brush: a 32-sided polygon one voxel thick, on a slice of this axis.
    Disk(SliceAxis),
    /// Slicer's sphere brush (32 x 32 facets), poles along the vertical axis of the view
    /// normal to this axis.
    Sphere(SliceAxis),
    /// `BrushPixelMode`: one voxel.
    Pixel,
}

/// Parameters of Paint (and of Erase, with `erase_all_segments`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrushParams {
    /// `BrushAbsoluteDiameter` in mm, default 5.
    pub brush_absolute_diameter: f64,
    /// `BrushSphere`, default 0.
    pub brush_sphere: bool,
    /// `BrushSliceAxis` (segkit's; Slicer takes it from the view), default K.
    pub brush_slice_axis: SliceAxis,
    /// `BrushPixelMode`, default 0.
    pub brush_pixel_mode: bool,
    /// `EraseAllSegments` (Erase only), default 0.
    pub erase_all_segments: bool,
}

impl BrushParams {
    /// The parameters from checked values (given or the schema's defaults).
    pub fn from_values(v: &ParamValues, erase: bool) -> Result<Self, EffectError> {
        Ok(BrushParams {
            brush_absolute_diameter: v.double("BrushAbsoluteDiameter")?,
            brush_sphere: v.boolean("BrushSphere")?,
            brush_slice_axis: v.choice("BrushSliceAxis", SliceAxis::from_name)?,
            brush_pixel_mode: v.boolean("BrushPixelMode")?,
            erase_all_segments: erase && v.boolean("EraseAllSegments")?,
        })
    }

    /// The brush's shape.
    pub fn shape(&self) -> BrushShape {
        if self.brush_pixel_mode {
            BrushShape::Pixel
        } else if self.brush_sphere {
            BrushShape::Sphere(self.brush_slice_axis)
        } else {
            BrushShape::Disk(self.brush_slice_axis)
        }
    }
}

impl Default for BrushParams {
    /// Slicer's defaults, as the schema states them.
    fn default() -> Self {
        Self::from_values(&ParamValues::defaults(&Erase.spec()), true)
            .expect("the Erase schema's defaults parse")
    }
}

/// A brush footprint: 0/1 voxels around the centre voxel `center` (`[k, j, i]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub mask: Array3<u8>,
    pub center: [usize; 3],
}

impl Stamp {
    /// Number of voxels in the footprint.
    pub fn voxels(&self) -> usize {
        self.mask.iter().filter(|&&v| v != 0).count()
    }
}

/// One face plane of a convex mesh centred on the origin: `normal . p <= offset` inside.
#[derive(Debug, Clone, Copy)]
struct Plane {
    normal: [f64; 3],
    offset: f64,
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// The plane through `a`, `b`, `c`, facing away from the origin.
fn plane(a: [f64; 3], b: [f64; 3], c: [f64; 3]) -> Plane {
    let n = cross(sub(b, a), sub(c, a));
    let len = dot(n, n).sqrt();
    let mut normal = [n[0] / len, n[1] / len, n[2] / len];
    let mut offset = dot(normal, a);
    if offset < 0.0 {
        normal = [-normal[0], -normal[1], -normal[2]];
        offset = -offset;
    }
    Plane { normal, offset }
}

/// Faces of `vtkSphereSource` (theta and phi resolution 32) of radius `r`, pole along z.
fn sphere_planes(r: f64) -> Vec<Plane> {
    let n = BRUSH_RESOLUTION;
    let point = |phi: f64, theta: f64| {
        [
            r * phi.sin() * theta.cos(),
            r * phi.sin() * theta.sin(),
            r * phi.cos(),
        ]
    };
    let theta = |i: usize| 2.0 * PI * (i % n) as f64 / n as f64;
    let phi = |j: usize| PI * j as f64 / n as f64;
    let mut planes = Vec::with_capacity(n * n);
    for i in 0..n {
        let (t0, t1) = (theta(i), theta(i + 1));
        planes.push(plane([0.0, 0.0, r], point(phi(1), t0), point(phi(1), t1)));
        planes.push(plane(
            [0.0, 0.0, -r],
            point(phi(n - 1), t0),
            point(phi(n - 1), t1),
        ));
        for j in 1..n - 1 {
            // The quad between rings j and j + 1 is planar (an isosceles trapezoid).
            planes.push(plane(
                point(phi(j), t0),
                point(phi(j), t1),
                point(phi(j + 1), t1),
            ));
        }
    }
    planes
}

/// Sides of `vtkCylinderSource` (resolution 32) of radius `r` around z, a vertex on x.
fn disk_planes(r: f64) -> Vec<Plane> {
    let n = BRUSH_RESOLUTION as f64;
    let offset = r * (PI / n).cos();
    (0..BRUSH_RESOLUTION)
        .map(|m| {
            let a = (m as f64 + 0.5) * 2.0 * PI / n;
            Plane {
                normal: [a.cos(), a.sin(), 0.0],
                offset,
            }
        })
        .collect()
}

/// The brush footprint for a diameter in mm on voxels of `spacing_ijk` mm (i, j, k).
///
/// Voxel offsets whose centres (in mm, relative to the centre voxel's) lie inside or on
/// Slicer's brush mesh; see the module documentation. A diameter too small to reach a
/// neighbour gives the centre voxel alone.
pub fn brush_stamp(diameter_mm: f64, spacing_ijk: [f64; 3], shape: BrushShape) -> Stamp {
    let r = diameter_mm.max(0.0) / 2.0;
    let spacing_kji = [spacing_ijk[2], spacing_ijk[1], spacing_ijk[0]];
    let (planes, local_axes, flat) = match shape {
        BrushShape::Pixel => {
            return Stamp {
                mask: Array3::ones((1, 1, 1)),
                center: [0, 0, 0],
            }
        }
        BrushShape::Disk(axis) => {
            // Local z = the slice axis; x, y = the two others.
            let z = axis.kji();
            let others: Vec<usize> = (0..3).filter(|&a| a != z).collect();
            (disk_planes(r), [others[0], others[1], z], Some(z))
        }
        BrushShape::Sphere(axis) => {
            // Local z = the pole: the vertical axis of the view (J for K, else K).
            let pole = if axis == SliceAxis::K { 1 } else { 0 };
            let others: Vec<usize> = (0..3).filter(|&a| a != pole).collect();
            (sphere_planes(r), [others[0], others[1], pole], None)
        }
    };
    let inradius = planes.iter().map(|p| p.offset).fold(r, f64::min);
    // Points on a face count as inside, as Slicer's rasteriser counts the mesh's vertices.
    let tolerance = 1e-9 * r.max(1.0);
    let half: [usize; 3] = std::array::from_fn(|a| {
        if flat == Some(a) || spacing_kji[a].is_nan() || spacing_kji[a] <= 0.0 {
            0
        } else {
            ((r + tolerance) / spacing_kji[a]).floor().min(1e6) as usize
        }
    });
    let dim = (2 * half[0] + 1, 2 * half[1] + 1, 2 * half[2] + 1);
    let mask = Array3::from_shape_fn(dim, |(k, j, i)| {
        let idx = [k, j, i];
        let p: [f64; 3] =
            std::array::from_fn(|a| (idx[a] as f64 - half[a] as f64) * spacing_kji[a]);
        let q = [p[local_axes[0]], p[local_axes[1]], p[local_axes[2]]];
        let d2 = dot(q, q);
        let inside = if d2 <= inradius * inradius {
            true
        } else if d2 > (r + tolerance) * (r + tolerance) {
            false
        } else {
            planes
                .iter()
                .all(|f| dot(f.normal, q) <= f.offset + tolerance)
        };
        u8::from(inside)
    });
    let mut stamp = Stamp { mask, center: half };
    // Mesh vertices exactly on a voxel centre of an axis are ties; Slicer's rasteriser
    // (it slices the mesh along k and fills each slice's polygon row by row) keeps some
    // and drops others. These are the ones it drops, as measured (parity tests).
    for &(axis, sign) in dropped_axis_vertices(shape) {
        let s = spacing_kji[axis];
        let steps = (r / s).round();
        if steps >= 1.0 && (steps * s - r).abs() <= tolerance && steps as usize <= half[axis] {
            let mut at = stamp.center;
            at[axis] = if sign > 0 {
                at[axis] + steps as usize
            } else {
                at[axis] - steps as usize
            };
            stamp.mask[at] = 0;
        }
    }
    stamp
}

/// The brush mesh's vertices on the lattice axes (`[k, j, i]` axis, direction) that
/// Slicer's `vtkPolyDataToImageStencil` leaves out when they fall exactly on a voxel
/// centre: those on a slicing plane of k, or in a cut plane that contains mesh edges.
fn dropped_axis_vertices(shape: BrushShape) -> &'static [(usize, i8)] {
    match shape {
        BrushShape::Pixel | BrushShape::Disk(SliceAxis::K) => &[],
        BrushShape::Disk(SliceAxis::J) => &[(0, 1)],
        BrushShape::Disk(SliceAxis::I) => &[(0, 1), (0, -1)],
        // Poles along j: the equator's vertices on k and i are dropped, the poles kept.
        BrushShape::Sphere(SliceAxis::K) => &[(0, 1), (0, -1), (2, 1), (2, -1)],
        BrushShape::Sphere(_) => &[(0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1)],
    }
}

/// The stroke's points: the given ones, with Slicer's extra points between consecutive
/// points more than `0.2 d` apart, each rounded to the nearest voxel (`[k, j, i]`).
pub fn stroke_points(
    points_kji: &[[usize; 3]],
    diameter_mm: f64,
    spacing_ijk: [f64; 3],
) -> Vec<[i64; 3]> {
    let spacing_kji = [spacing_ijk[2], spacing_ijk[1], spacing_ijk[0]];
    let step = MAXIMUM_POINT_DISTANCE_IN_STROKE * diameter_mm;
    let mut out = Vec::with_capacity(points_kji.len());
    for (n, p) in points_kji.iter().enumerate() {
        let b = p.map(|v| v as f64);
        if n > 0 && step > 0.0 {
            let a = points_kji[n - 1].map(|v| v as f64);
            let length = (0..3)
                .map(|x| ((b[x] - a[x]) * spacing_kji[x]).powi(2))
                .sum::<f64>()
                .sqrt();
            let added = (length / step) as i64 - 1;
            for m in 0..added.max(0) {
                let w = (m + 1) as f64 / (added + 1) as f64;
                out.push(std::array::from_fn(|x| {
                    (w * a[x] + (1.0 - w) * b[x] + 0.5).floor() as i64
                }));
            }
        }
        out.push(p.map(|v| v as i64));
    }
    out
}

/// ORs `stamp` into a mask of `shape` at each point (`[k, j, i]`, voxels outside the
/// mask are cut off).
pub fn stamp_points(
    shape: (usize, usize, usize),
    stamp: &Stamp,
    points: &[[i64; 3]],
) -> Array3<u8> {
    let mut mask = Array3::<u8>::zeros(shape);
    let dims = [shape.0 as i64, shape.1 as i64, shape.2 as i64];
    let sdim = stamp.mask.dim();
    let sdims = [sdim.0 as i64, sdim.1 as i64, sdim.2 as i64];
    for p in points {
        // Box of the stamp in the mask, clipped.
        let lo: [i64; 3] = std::array::from_fn(|a| p[a] - stamp.center[a] as i64);
        let from: [i64; 3] = std::array::from_fn(|a| lo[a].max(0));
        let to: [i64; 3] = std::array::from_fn(|a| (lo[a] + sdims[a]).min(dims[a]));
        if (0..3).any(|a| from[a] >= to[a]) {
            continue;
        }
        let u = |v: i64| v as usize;
        let mut dst = mask.slice_mut(s![
            u(from[0])..u(to[0]),
            u(from[1])..u(to[1]),
            u(from[2])..u(to[2])
        ]);
        let src = stamp.mask.slice(s![
            u(from[0] - lo[0])..u(to[0] - lo[0]),
            u(from[1] - lo[1])..u(to[1] - lo[1]),
            u(from[2] - lo[2])..u(to[2] - lo[2])
        ]);
        Zip::from(&mut dst).and(&src).for_each(|d, &v| *d |= v);
    }
    mask
}

/// Paints (or erases) a stroke: the brush mask over the lattice of `shape`.
///
/// Returns one modifier of the selected segment: Add for Paint; Remove, or RemoveAll
/// with `erase_all_segments`, for Erase.
///
/// # Errors
/// No point, or a diameter that is not positive.
pub fn paint(
    shape: (usize, usize, usize),
    spacing_ijk: [f64; 3],
    points_kji: &[[usize; 3]],
    params: &BrushParams,
    erase: bool,
) -> Result<EffectOutput, EffectError> {
    if points_kji.is_empty() {
        return Err(EffectError::Input(format!(
            "{} needs at least one point (the brush positions)",
            if erase { "Erase" } else { "Paint" }
        )));
    }
    let d = params.brush_absolute_diameter;
    if d.is_nan() || d <= 0.0 {
        return Err(EffectError::Parameter {
            name: "BrushAbsoluteDiameter".into(),
            reason: format!("{d} is not a positive diameter"),
        });
    }
    let stamp = brush_stamp(d, spacing_ijk, params.shape());
    let points = stroke_points(points_kji, d, spacing_ijk);
    let mask = stamp_points(shape, &stamp, &points);
    let mode = match (erase, params.erase_all_segments) {
        (false, _) => ModificationMode::Add,
        (true, false) => ModificationMode::Remove,
        (true, true) => ModificationMode::RemoveAll,
    };
    Ok(EffectOutput {
        modifiers: vec![Modifier::selected(mode, mask)],
        reported: vec![
            ("brush_voxels".into(), stamp.voxels() as f64),
            ("stroke_points".into(), points.len() as f64),
        ],
        volumes: Vec::new(),
    })
}

fn brush_spec(erase: bool) -> EffectSpec {
    let mut spec = if erase {
        EffectSpec::new(
            "Erase",
            "erase",
            "Erase",
            "Erase with a round brush at the given points (a stroke).",
        )
    } else {
        EffectSpec::new(
            "Paint",
            "paint",
            "Paint",
            "Paint with a round brush at the given points (a stroke).",
        )
    };
    // The source volume only gives the lattice (the engine caches it, so a stroke sends
    // nothing but its points); the brush reads no voxel.
    spec.inputs = vec![Input::SourceVolume, Input::Point];
    let axes = vec![
        ChoiceSpec::new("K", "K (axial)", "Paint on the slice of constant k."),
        ChoiceSpec::new("J", "J (coronal)", "Paint on the slice of constant j."),
        ChoiceSpec::new("I", "I (sagittal)", "Paint on the slice of constant i."),
    ];
    spec.params = vec![
        ParamSpec::double("BrushAbsoluteDiameter", "Diameter", "5")
            .help("Brush diameter in mm.")
            .range(0.01, 100.0)
            .step(0.5)
            .unit("mm"),
        ParamSpec::boolean("BrushSphere", "Sphere brush", "0")
            .help("Use a 3-D spherical brush rather than a 2-D circular brush."),
        ParamSpec::choice("BrushSliceAxis", "Slice axis", axes, "K").help(
            "The slice a 2-D brush paints on (Slicer takes it from the view); also orients the sphere's facets.",
        ),
        ParamSpec::boolean("BrushPixelMode", "Pixel mode", "0")
            .help("Each point changes one voxel."),
    ];
    if erase {
        spec.params.push(
            ParamSpec::boolean("EraseAllSegments", "Erase all segments", "0")
                .help("Erase from every segment, not only the selected one."),
        );
    }
    spec.reported = vec![
        ("brush_voxels", "Voxels in one brush stamp."),
        (
            "stroke_points",
            "Stamps in the stroke (interpolated points included).",
        ),
    ];
    spec
}

/// The Paint effect in the catalog.
pub struct Paint;

impl Effect for Paint {
    fn spec(&self) -> EffectSpec {
        brush_spec(false)
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let p = BrushParams::from_values(request.params, false)?;
        paint(
            request.shape,
            request.spacing_ijk(),
            request.points_kji,
            &p,
            false,
        )
    }
}

/// The Erase effect in the catalog.
pub struct Erase;

impl Effect for Erase {
    fn spec(&self) -> EffectSpec {
        brush_spec(true)
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let p = BrushParams::from_values(request.params, true)?;
        paint(
            request.shape,
            request.spacing_ijk(),
            request.points_kji,
            &p,
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::catalog::tests::run_on;
    use crate::volume::{AnyVolume, Geometry, Volume};

    /// A source volume of `shape`: it only gives the lattice.
    fn source(shape: (usize, usize, usize)) -> AnyVolume {
        Volume::new(Array3::<i16>::zeros(shape), Geometry::default()).into()
    }

    fn picture(stamp: &Stamp) -> Vec<String> {
        stamp
            .mask
            .outer_iter()
            .flat_map(|plane| {
                plane
                    .outer_iter()
                    .map(|row| {
                        row.iter()
                            .map(|&v| if v != 0 { '#' } else { '.' })
                            .collect()
                    })
                    .collect::<Vec<String>>()
            })
            .collect()
    }

    #[test]
    fn small_disks_on_unit_voxels() {
        let disk = |d| brush_stamp(d, [1.0; 3], BrushShape::Disk(SliceAxis::K));
        assert_eq!(disk(1.0).voxels(), 1);
        // d = 2: the 4 neighbours at exactly 1 mm are vertices of the polygon: in.
        assert_eq!(picture(&disk(2.0)), vec![".#.", "###", ".#."]);
        assert_eq!(disk(3.0).voxels(), 9);
        assert_eq!(disk(5.0).voxels(), 21);
        // d = 10: (3, 4) is 5 mm away, on the circle but outside the inscribed polygon.
        let d10 = disk(10.0);
        assert_eq!(d10.voxels(), 73);
        assert_eq!(d10.mask[[0, 5 + 4, 5 + 3]], 0);
        assert_eq!(d10.mask[[0, 5, 10]], 1);
    }

    #[test]
    fn disks_follow_the_slice_axis_and_anisotropic_spacing() {
        // 3.05 x 3.05 x 10 mm voxels: a 10 mm disk on K reaches one voxel in i and j.
        let s = [3.046875, 3.046875, 10.0];
        let k = brush_stamp(10.0, s, BrushShape::Disk(SliceAxis::K));
        assert_eq!(k.mask.dim(), (1, 3, 3));
        assert_eq!(k.voxels(), 9);
        // On a J slice the disk spans i (1 voxel each side) and k (none: 10 mm > 5 mm).
        let j = brush_stamp(10.0, s, BrushShape::Disk(SliceAxis::J));
        assert_eq!(j.mask.dim(), (1, 1, 3));
        assert_eq!(j.voxels(), 3);
        // A 20 mm disk on the I slice reaches k +-1 (10 mm = r, a vertex) and j +-3.
        let i = brush_stamp(20.0, s, BrushShape::Disk(SliceAxis::I));
        assert_eq!(i.mask.dim(), (3, 7, 1));
    }

    #[test]
    fn the_sphere_is_slightly_smaller_than_the_ball() {
        // 5 mm on 1 mm voxels: 81 voxels, as Slicer's stencil.
        let s5 = brush_stamp(5.0, [1.0; 3], BrushShape::Sphere(SliceAxis::K));
        assert_eq!(s5.voxels(), 81);
        // 6 mm: the ideal ball has 123 voxels; (1, 2, 2) at 3 mm falls between facets,
        // and of the vertices on the axes only the poles (along j) are kept: 95, as Slicer.
        let s6 = brush_stamp(6.0, [1.0; 3], BrushShape::Sphere(SliceAxis::K));
        assert_eq!(s6.voxels(), 95);
        assert_eq!(s6.mask[[3, 0, 3]], 1);
        assert_eq!(s6.mask[[0, 3, 3]], 0);
        assert_eq!(s6.mask[[3, 3, 0]], 0);
    }

    #[test]
    fn strokes_add_points_every_fifth_of_a_diameter() {
        // 10 voxels of 1 mm with d = 5: step 1 mm, floor(10 / 1) - 1 = 9 points between.
        let pts = stroke_points(&[[0, 0, 0], [0, 0, 10]], 5.0, [1.0; 3]);
        assert_eq!(pts.len(), 11);
        let mut i: Vec<i64> = pts.iter().map(|p| p[2]).collect();
        i.sort();
        assert_eq!(i, (0..=10).collect::<Vec<_>>());
        // Closer than 2 steps: no point added.
        assert_eq!(
            stroke_points(&[[0, 0, 0], [0, 0, 1]], 5.0, [1.0; 3]).len(),
            2
        );
    }

    #[test]
    fn stamps_are_cut_off_at_the_border() {
        let stamp = brush_stamp(3.0, [1.0; 3], BrushShape::Disk(SliceAxis::K));
        let m = stamp_points((1, 3, 3), &stamp, &[[0, 0, 0]]);
        assert_eq!(m.iter().filter(|&&v| v != 0).count(), 4);
    }

    #[test]
    fn paint_adds_and_erase_removes() {
        let seg = vec![Array3::<u8>::zeros((3, 5, 5))];
        let src = source((3, 5, 5));
        let out = run_on("paint", Some(&src), &seg, Some(0), &[[1, 2, 2]], &[]).unwrap();
        assert_eq!(out.modifiers[0].mode, ModificationMode::Add);
        assert_eq!(
            out.modifiers[0].mask.iter().filter(|&&v| v != 0).count(),
            21
        );
        let out = run_on(
            "erase",
            Some(&src),
            &seg,
            Some(0),
            &[[1, 2, 2]],
            &[("EraseAllSegments", "1"), ("BrushSphere", "1")],
        )
        .unwrap();
        assert_eq!(out.modifiers[0].mode, ModificationMode::RemoveAll);
        let out = run_on("erase", Some(&src), &seg, Some(0), &[[1, 2, 2]], &[]).unwrap();
        assert_eq!(out.modifiers[0].mode, ModificationMode::Remove);
        let e = run_on("paint", Some(&src), &seg, Some(0), &[], &[]).unwrap_err();
        assert!(e.to_string().contains("at least one point"), "{e}");
        let e = run_on(
            "paint",
            Some(&src),
            &seg,
            Some(0),
            &[[0, 0, 0]],
            &[("BrushAbsoluteDiameter", "0")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("BrushAbsoluteDiameter"), "{e}");
    }

    #[test]
    fn pixel_mode_sets_one_voxel_per_point() {
        let seg = vec![Array3::<u8>::zeros((1, 1, 30))];
        let src = source((1, 1, 30));
        let out = run_on(
            "paint",
            Some(&src),
            &seg,
            Some(0),
            &[[0, 0, 0], [0, 0, 20]],
            &[("BrushPixelMode", "1"), ("BrushAbsoluteDiameter", "10")],
        )
        .unwrap();
        // Step 2 mm over 20 mm: 9 points between, at 2, 4, ..., 18.
        assert_eq!(
            out.modifiers[0].mask.iter().filter(|&&v| v != 0).count(),
            11
        );
    }

    proptest::proptest! {
        /// The stamp lies inside the ideal ball and is symmetric under i -> -i.
        #[test]
        fn stamp_inside_ball_and_symmetric(d in 0.5f64..30.0, si in 0.3f64..4.0, sk in 0.3f64..6.0, sphere: bool) {
            let shape = if sphere { BrushShape::Sphere(SliceAxis::K) } else { BrushShape::Disk(SliceAxis::K) };
            let st = brush_stamp(d, [si, si, sk], shape);
            let c = st.center;
            for ((k, j, i), &v) in st.mask.indexed_iter() {
                if v == 0 { continue; }
                let p = [(k as f64 - c[0] as f64) * sk, (j as f64 - c[1] as f64) * si, (i as f64 - c[2] as f64) * si];
                proptest::prop_assert!(p.iter().map(|x| x * x).sum::<f64>() <= (d / 2.0).powi(2) * (1.0 + 1e-9));
                proptest::prop_assert_eq!(st.mask[[k, j, 2 * c[2] - i]], 1);
            }
            proptest::prop_assert_eq!(st.mask[c], 1);
        }
    }
}
