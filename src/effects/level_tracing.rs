//! Level tracing: the outline of the region at least as bright as the clicked voxel, in
//! the clicked slice, filled.
//!
//! Reference: Slicer's `SegmentEditorLevelTracingEffect.py`, which traces the contour with
//! `vtkITKLevelTracingImageFilter` (`itk::LevelTracingImageFilter`, Slicer's
//! `Libs/vtkITK`) and fills it as the Draw effect does (`vtkImageFillROI`, Slicer's
//! `Base/Logic`), mode Add. In the slice through the clicked voxel on the plane normal to
//! [`SliceAxis`] (the view's orientation in Slicer, which must be aligned with the volume's
//! axes):
//!
//! 1. **Region**: the pixels whose value is `>= T`, `T` the clicked voxel's value.
//! 2. **Start**: the clicked pixel must be on the region's boundary. If one of its 4 face
//!    neighbours (inside the slice) is `< T` it is the start. Otherwise, if a diagonal
//!    neighbour is `< T`, the start moves to the face neighbour that follows that diagonal
//!    in the neighbour ring (the threshold stays `T`). Otherwise (an interior pixel, or a
//!    lone pixel... with nothing below `T` around) there is no contour and nothing changes.
//! 3. **Contour**: Moore (8-neighbour) boundary following from the start, turning around
//!    the current pixel from the last background direction, until it comes back to the
//!    start pixel (ITK's stopping rule: the first return). Pixels outside the slice are
//!    skipped as if they were background. The contour is the chain of pixel centres
//!    visited; a lone pixel makes no step and no contour.
//! 4. **Fill**: the chain is a polygon with vertices at pixel centres, filled as
//!    `vtkImageFillROI` fills a polygon: an edge-table scan fill that takes each span from
//!    its left edge up to (not including) its right edge, plus the polygon's lines drawn
//!    between consecutive vertices (but not from the last back to the first), so the
//!    boundary pixels are in and holes are filled. Fewer than 3 vertices fill nothing.
//!
//! **Zoom.** Slicer fills the polygon on the slice view's *screen pixels* and resamples
//! that onto the segment, so its result depends on the zoom and on the view's offset.
//! segkit fills on the voxel grid of the slice, as Slicer does at one screen pixel per
//! voxel with the view's axes along the slice's first and second index axes (`u`, `v` =
//! `(i, j)`, `(i, k)` or `(j, k)`).
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::effects::level_tracing::{level_tracing, SliceAxis};
//! // A 3x3 bright square in a 5x5 dark slice; a click on its edge fills the square.
//! let mut ct = Array3::<i16>::zeros((1, 5, 5));
//! for j in 1..4 { for i in 1..4 { ct[[0, j, i]] = 100; } }
//! let traced = level_tracing(ct.view(), [0, 1, 2], SliceAxis::K).unwrap();
//! assert_eq!(traced.contour_kji.len(), 8);
//! assert_eq!(traced.mask.iter().filter(|&&v| v != 0).count(), 9);
//! ```

use super::schema::{ChoiceSpec, EffectSpec, Input, ParamSpec, ParamValues};
use super::{
    check_point, Effect, EffectError, EffectOutput, EffectRequest, ModificationMode, Modifier,
};
use crate::volume::Scalar;
use crate::with_volume;
use ndarray::{s, Array2, Array3, ArrayView2, ArrayView3};

/// The axis normal to the traced slice (the slice view's orientation in Slicer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SliceAxis {
    /// The IJ plane at the clicked `k` (axial views of axial scans).
    #[default]
    K,
    /// The IK plane at the clicked `j`.
    J,
    /// The JK plane at the clicked `i`.
    I,
}

impl SliceAxis {
    /// All axes, default first.
    pub const ALL: [SliceAxis; 3] = [SliceAxis::K, SliceAxis::J, SliceAxis::I];

    /// The parameter value (`K`, `J`, `I`).
    pub fn slicer_name(self) -> &'static str {
        match self {
            SliceAxis::K => "K",
            SliceAxis::J => "J",
            SliceAxis::I => "I",
        }
    }

    /// The axis named `name`.
    pub fn from_slicer_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.slicer_name() == name)
    }

    /// The slice's pixel `(u, v)` as a voxel `[k, j, i]`, the fixed index being `at`.
    fn voxel(self, u: usize, v: usize, at: usize) -> [usize; 3] {
        match self {
            SliceAxis::K => [at, v, u],
            SliceAxis::J => [v, at, u],
            SliceAxis::I => [v, u, at],
        }
    }

    /// The clicked voxel as `(u, v)` and the fixed index.
    fn split(self, kji: [usize; 3]) -> ((usize, usize), usize) {
        match self {
            SliceAxis::K => ((kji[2], kji[1]), kji[0]),
            SliceAxis::J => ((kji[2], kji[0]), kji[1]),
            SliceAxis::I => ((kji[1], kji[0]), kji[2]),
        }
    }
}

/// Parameters of Level tracing; `Default` gives the default axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LevelTracingParams {
    /// `SliceAxis`: which slice through the clicked voxel is traced.
    pub slice_axis: SliceAxis,
}

impl LevelTracingParams {
    /// The parameters from checked values (given or the schema's defaults).
    pub fn from_values(v: &ParamValues) -> Result<Self, EffectError> {
        Ok(LevelTracingParams {
            slice_axis: v.choice("SliceAxis", SliceAxis::from_slicer_name)?,
        })
    }
}

/// What [`level_tracing`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Traced {
    /// The contour's pixel centres as voxels `[k, j, i]`, from the start, in tracing order
    /// (the points of `vtkITKLevelTracingImageFilter`'s output); empty without contour.
    pub contour_kji: Vec<[usize; 3]>,
    /// The filled contour: 0/1, the shape of the source, non-zero only in the slice.
    pub mask: Array3<u8>,
}

/// Traces and fills the level contour through `seed_kji` in the slice normal to `axis`:
/// see the module documentation.
///
/// # Errors
/// A seed outside the volume.
pub fn level_tracing<T: Scalar>(
    source: ArrayView3<T>,
    seed_kji: [usize; 3],
    axis: SliceAxis,
) -> Result<Traced, EffectError> {
    check_point(seed_kji, source.dim())?;
    let ((u, v), at) = axis.split(seed_kji);
    let slice: ArrayView2<T> = match axis {
        SliceAxis::K => source.slice(s![at, .., ..]),
        SliceAxis::J => source.slice(s![.., at, ..]),
        SliceAxis::I => source.slice(s![.., .., at]),
    };
    let chain = trace_contour(slice, (u, v));
    let mut mask = Array3::<u8>::zeros(source.dim());
    if let Some(filled) = fill_polygon(&chain) {
        let (u0, v0) = filled.origin;
        for ((fv, fu), &on) in filled.pixels.indexed_iter() {
            let (pu, pv) = (u0 + fu as i64, v0 + fv as i64);
            if on != 0 && pu >= 0 && pv >= 0 {
                let (pu, pv) = (pu as usize, pv as usize);
                if pu < slice.dim().1 && pv < slice.dim().0 {
                    mask[axis.voxel(pu, pv, at)] = 1;
                }
            }
        }
    }
    let contour_kji = chain
        .iter()
        .map(|&(cu, cv)| axis.voxel(cu, cv, at))
        .collect();
    Ok(Traced { contour_kji, mask })
}

/// The ring of 8 neighbours `(du, dv)` in ITK's order.
const RING: [(i64, i64); 8] = [
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
    (1, 0),
    (1, -1),
    (0, -1),
];

/// The boundary chain `(u, v)` of the region `>= slice[seed]` through `seed` (`slice` is
/// `[v][u]`), as `itk::LevelTracingImageFilter` traces it; empty when there is none.
fn trace_contour<T: Scalar>(slice: ArrayView2<T>, seed: (usize, usize)) -> Vec<(usize, usize)> {
    let (nv, nu) = slice.dim();
    let threshold = slice[[seed.1, seed.0]];
    let at = |p: (i64, i64)| -> Option<T> {
        (p.0 >= 0 && p.1 >= 0 && (p.0 as usize) < nu && (p.1 as usize) < nv)
            .then(|| slice[[p.1 as usize, p.0 as usize]])
    };
    let below = |p: (i64, i64)| at(p).is_some_and(|x| x < threshold);
    let step = |p: (i64, i64), n: usize| (p.0 + RING[n].0, p.1 + RING[n].1);

    let mut pix = (seed.0 as i64, seed.1 as i64);
    // The direction (in the ring) of a background pixel next to the current one.
    let mut background = match [1, 3, 5, 7].into_iter().find(|&n| below(step(pix, n))) {
        Some(n) => n,
        None => match [0, 2, 4, 6].into_iter().find(|&n| below(step(pix, n))) {
            Some(corner) => {
                // Move to the face neighbour after the corner; the corner is then its
                // face neighbour, 6 steps further round the ring.
                let face = (corner + 1) % 8;
                pix = step(pix, face);
                (face + 6) % 8
            }
            None => return Vec::new(),
        },
    };
    let start = pix;
    let mut chain = vec![(start.0 as usize, start.1 as usize)];
    // Each (pixel, direction) state can come once per cycle; more means no return.
    let limit = 8 * nu * nv + 8;
    loop {
        let next = (1..=8)
            .map(|s| (background + s) % 8)
            .find(|&n| at(step(pix, n)).is_some_and(|x| x >= threshold));
        let Some(n) = next else {
            return Vec::new(); // a lone pixel: no step, no contour
        };
        pix = step(pix, n);
        background = (n + 4) % 8;
        if pix == start || chain.len() > limit {
            break;
        }
        chain.push((pix.0 as usize, pix.1 as usize));
    }
    chain
}

/// A filled polygon: `pixels[v][u]`, pixel `(0, 0)` at `origin` `(u, v)`.
struct Filled {
    origin: (i64, i64),
    pixels: Array2<u8>,
}

/// Fills the polygon with integer vertices `points` `(u, v)` as `vtkImageFillROI` does in
/// Slicer's `CreateMaskImageFromPolyData`: on an image whose pixel 1 is the smallest
/// vertex coordinate, scan fill plus the lines between consecutive vertices. `None` for
/// fewer than 3 vertices (nothing is filled).
fn fill_polygon(points: &[(usize, usize)]) -> Option<Filled> {
    if points.len() < 3 {
        return None;
    }
    let umin = points.iter().map(|p| p.0).min()? as i64;
    let vmin = points.iter().map(|p| p.1).min()? as i64;
    let umax = points.iter().map(|p| p.0).max()? as i64;
    let vmax = points.iter().map(|p| p.1).max()? as i64;
    let origin = (umin - 1, vmin - 1);
    // Slicer's buffer: the bounds plus one pixel below and 32 - 1 above.
    let nx = (umax - origin.0) as usize + 32;
    let ny = (vmax - origin.1) as usize + 32;
    let xs: Vec<i64> = points.iter().map(|p| p.0 as i64 - origin.0).collect();
    let ys: Vec<i64> = points.iter().map(|p| p.1 as i64 - origin.1).collect();
    let mut pixels = Array2::<u8>::zeros((ny, nx));
    scan_fill(&xs, &ys, &mut pixels);
    draw_lines(&xs, &ys, &mut pixels);
    Some(Filled { origin, pixels })
}

/// One polygon edge in the scan fill, stepped along `y` with integer error terms.
#[derive(Debug, Clone, Copy)]
struct Edge {
    y_upper: i64,
    x: i64,
    dx: i64,
    dy: i64,
    x_inc: i64,
    r: i64,
}

impl Edge {
    /// The edge from `(x1, y1)` up to `(x2, y2)`, `y1 < y2`.
    fn new(x1: i64, y1: i64, x2: i64, y2: i64) -> Self {
        let (dx, dy) = ((x2 - x1).abs(), y2 - y1);
        let r = if dy <= dx { 2 * dy - dx } else { 2 * dx - dy };
        Edge {
            y_upper: y2,
            x: x1,
            dx,
            dy,
            x_inc: if x1 < x2 { 1 } else { -1 },
            r,
        }
    }

    /// Moves the edge to the next scan line.
    fn advance(&mut self) {
        if self.dy <= self.dx {
            // Shallow: step x until the error term says y moved.
            loop {
                self.x += self.x_inc;
                if self.r <= 0 {
                    self.r += 2 * self.dy;
                } else {
                    self.r += 2 * (self.dy - self.dx);
                    break;
                }
            }
        } else if self.r <= 0 {
            self.r += 2 * self.dx;
        } else {
            self.x += self.x_inc;
            self.r += 2 * (self.dx - self.dy);
        }
    }
}

/// Inserts `e` after the edges whose `x` is not larger (the order ties keep).
fn insert_by_x(list: &mut Vec<Edge>, e: Edge) {
    let at = list.iter().position(|p| e.x < p.x).unwrap_or(list.len());
    list.insert(at, e);
}

/// Edge-table scan fill of the closed polygon: on each scan line, spans between pairs of
/// active edges, from the left edge's `x` up to, not including, the right edge's.
fn scan_fill(xs: &[i64], ys: &[i64], out: &mut Array2<u8>) {
    let (ny, nx) = out.dim();
    let mut starting: Vec<Vec<Edge>> = vec![Vec::new(); ny];
    let n = xs.len();
    let (mut x1, mut y1) = (xs[n - 1], ys[n - 1]);
    for (&x2, &y2) in xs.iter().zip(ys) {
        if y1 != y2 {
            let e = if y1 < y2 {
                Edge::new(x1, y1, x2, y2)
            } else {
                Edge::new(x2, y2, x1, y1)
            };
            if let Some(list) = starting.get_mut(y1.min(y2).max(0) as usize) {
                insert_by_x(list, e);
            }
        }
        (x1, y1) = (x2, y2);
    }
    let mut active: Vec<Edge> = Vec::new();
    for (scan, new_edges) in starting.into_iter().enumerate() {
        for e in new_edges {
            insert_by_x(&mut active, e);
        }
        if active.is_empty() {
            continue;
        }
        active.retain(|e| (scan as i64) < e.y_upper);
        for pair in active.chunks(2) {
            let [left, right] = pair else {
                break; // an odd number of edges: VTK stops the line too
            };
            for x in left.x..right.x {
                if (0..nx as i64).contains(&x) {
                    out[[scan, x as usize]] = 1;
                }
            }
        }
        for e in active.iter_mut() {
            e.advance();
        }
        active.sort_by_key(|e| e.x); // stable: ties keep their order
    }
}

/// Draws the lines between consecutive vertices (not the closing one) with the
/// Bresenham steps of `vtkImageFillROI`'s `DrawLinesFast`, end points included.
fn draw_lines(xs: &[i64], ys: &[i64], out: &mut Array2<u8>) {
    let (ny, nx) = out.dim();
    let mut put = |x: i64, y: i64| {
        if (0..nx as i64).contains(&x) && (0..ny as i64).contains(&y) {
            out[[y as usize, x as usize]] = 1;
        }
    };
    for w in 0..xs.len().saturating_sub(1) {
        let (a, b) = ((xs[w], ys[w]), (xs[w + 1], ys[w + 1]));
        let ((x1, y1), (x2, _y2)) = if a.1 <= b.1 { (a, b) } else { (b, a) };
        let y2 = a.1.max(b.1);
        let (dx, dy) = ((x2 - x1).abs(), y2 - y1);
        let inc = if x1 < x2 { 1 } else { -1 };
        let (mut x, mut y) = (x1, y1);
        put(x, y);
        if dy <= dx {
            let mut r = 2 * dy - dx;
            while x != x2 {
                x += inc;
                if r <= 0 {
                    r += 2 * dy;
                } else {
                    y += 1;
                    r += 2 * (dy - dx);
                }
                put(x, y);
            }
        } else {
            let mut r = 2 * dx - dy;
            while y < y2 {
                y += 1;
                if r <= 0 {
                    r += 2 * dx;
                } else {
                    x += inc;
                    r += 2 * (dx - dy);
                }
                put(x, y);
            }
        }
    }
}

/// The Level tracing effect in the catalog.
pub struct LevelTracing;

impl Effect for LevelTracing {
    fn spec(&self) -> EffectSpec {
        let axes = vec![
            ChoiceSpec::new(
                "K",
                "IJ slice",
                "The slice of constant k (axial for axial scans).",
            ),
            ChoiceSpec::new(
                "J",
                "IK slice",
                "The slice of constant j (coronal for axial scans).",
            ),
            ChoiceSpec::new(
                "I",
                "JK slice",
                "The slice of constant i (sagittal for axial scans).",
            ),
        ];
        let axis = ParamSpec::choice("SliceAxis", "Slice", axes, "K").help(
            "Which slice through the clicked voxel is traced: the slice view's orientation \
             in Slicer, which must be aligned with the volume's axes.",
        );
        let mut spec = EffectSpec::new(
            "Level tracing",
            "level-tracing",
            "Level tracing",
            "Click on the edge of a bright region to add the region of the slice enclosed by \
             the outline of the voxels at least as bright as the clicked one. The outline is \
             filled on the voxel grid (Slicer fills it on screen pixels, so its result \
             depends on the zoom).",
        );
        spec.inputs = vec![Input::SourceVolume, Input::Point];
        spec.params = vec![axis];
        spec.reported = vec![(
            "contour_points",
            "Number of pixels in the traced outline (0: the click was not on an edge).",
        )];
        spec
    }

    fn run(&self, request: &EffectRequest) -> Result<EffectOutput, EffectError> {
        let source = request.source("Level tracing")?;
        let seed = request.point().ok_or_else(|| {
            EffectError::Input("Level tracing needs a point (the clicked voxel)".into())
        })?;
        let p = LevelTracingParams::from_values(request.params)?;
        let traced = with_volume!(source, v => level_tracing(v.data.view(), seed, p.slice_axis))?;
        let points = traced.contour_kji.len();
        let modifiers = if traced.mask.iter().any(|&v| v != 0) {
            vec![Modifier::selected(ModificationMode::Add, traced.mask)]
        } else {
            Vec::new()
        };
        Ok(EffectOutput {
            modifiers,
            reported: vec![("contour_points".into(), points as f64)],
            volumes: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A slice from rows of digits, `[0][v][u]`.
    fn slice(rows: &[&str]) -> Array3<i16> {
        let nv = rows.len();
        let nu = rows[0].len();
        let v: Vec<i16> = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| (b - b'0') as i16))
            .collect();
        Array3::from_shape_vec((1, nv, nu), v).unwrap()
    }

    fn picture(m: &Array3<u8>) -> Vec<String> {
        m.index_axis(ndarray::Axis(0), 0)
            .outer_iter()
            .map(|r| r.iter().map(|&v| if v != 0 { '#' } else { '.' }).collect())
            .collect()
    }

    fn trace(rows: &[&str], u: usize, v: usize) -> Traced {
        level_tracing(slice(rows).view(), [0, v, u], SliceAxis::K).unwrap()
    }

    #[test]
    fn a_square_is_traced_clockwise_from_the_click_and_filled() {
        let t = trace(&["00000", "01110", "01110", "01110", "00000"], 2, 1);
        // Starts at the click; the first background neighbour is (-1, 0)... the ring
        // turns from there.
        assert_eq!(t.contour_kji[0], [0, 1, 2]);
        assert_eq!(t.contour_kji.len(), 8);
        assert_eq!(
            picture(&t.mask),
            vec![".....", ".###.", ".###.", ".###.", "....."]
        );
    }

    #[test]
    fn holes_are_filled_and_darker_pixels_inside_are_included() {
        let rows = [
            "0000000", "0555550", "0500050", "0505050", "0500050", "0555550", "0000000",
        ];
        let t = trace(&rows, 1, 3);
        assert_eq!(
            picture(&t.mask),
            vec![".......", ".#####.", ".#####.", ".#####.", ".#####.", ".#####.", "......."]
        );
    }

    #[test]
    fn an_interior_click_has_no_contour() {
        let t = trace(&["00000", "01110", "01110", "01110", "00000"], 2, 2);
        assert!(t.contour_kji.is_empty());
        assert!(t.mask.iter().all(|&v| v == 0));
        // A uniform slice: nothing below the threshold anywhere.
        let t = trace(&["111", "111"], 0, 0);
        assert!(t.contour_kji.is_empty());
    }

    #[test]
    fn a_lone_pixel_or_a_two_pixel_contour_fills_nothing() {
        let t = trace(&["000", "010", "000"], 1, 1);
        assert!(t.contour_kji.is_empty());
        assert!(t.mask.iter().all(|&v| v == 0));
        let t = trace(&["0000", "0110", "0000"], 1, 1);
        assert_eq!(t.contour_kji.len(), 2);
        assert!(t.mask.iter().all(|&v| v == 0));
        // Three pixels in a line: a degenerate polygon, drawn as its lines.
        let t = trace(&["00000", "01110", "00000"], 1, 1);
        assert_eq!(t.contour_kji.len(), 4);
        assert_eq!(picture(&t.mask), vec![".....", ".###.", "....."]);
    }

    #[test]
    fn a_seed_with_only_a_dark_corner_moves_to_a_face_neighbour() {
        // The click (u 1, v 1) has only its corner (0, 0) below it: the start moves to the
        // face neighbour after that corner in the ring, (u 0, v 1).
        let t = trace(&["0111", "1111", "1111"], 1, 1);
        assert_eq!(t.contour_kji[0], [0, 1, 0]);
        assert_eq!(picture(&t.mask), vec![".###", "####", "####"]);
    }

    #[test]
    fn the_border_is_not_background() {
        // A region touching the border: its outline runs along the border.
        let t = trace(&["1110", "1110", "0000"], 2, 0);
        assert_eq!(picture(&t.mask), vec!["###.", "###.", "...."]);
    }

    #[test]
    fn each_axis_traces_its_own_slice() {
        let mut d = Array3::<i16>::zeros((5, 5, 5));
        for k in 1..4 {
            for j in 1..4 {
                for i in 1..4 {
                    d[[k, j, i]] = 7;
                }
            }
        }
        for axis in SliceAxis::ALL {
            let t = level_tracing(d.view(), [2, 1, 2], axis).unwrap();
            let n = t.mask.iter().filter(|&&v| v != 0).count();
            match axis {
                // The click (k 2, j 1, i 2) is on the edge of the IJ and JK slices' squares.
                SliceAxis::K | SliceAxis::I => assert_eq!(n, 9, "{axis:?}"),
                // In the IK slice at j = 1 it is inside the square (no edge).
                SliceAxis::J => assert_eq!(n, 0, "{axis:?}"),
            }
            assert!(t.mask.indexed_iter().all(|((k, j, i), &v)| v == 0
                || match axis {
                    SliceAxis::K => k == 2,
                    SliceAxis::J => j == 1,
                    SliceAxis::I => i == 2,
                }));
        }
    }

    #[test]
    fn the_scan_fill_takes_vtks_half_open_spans() {
        // A triangle (1,1) (5,1) (1,5): scan fill [left, right) plus the two drawn lines
        // (not the closing one from (1,5) back to (1,1), which the fill covers).
        let mut out = Array2::<u8>::zeros((7, 7));
        let (xs, ys) = (vec![1, 5, 1], vec![1, 1, 5]);
        scan_fill(&xs, &ys, &mut out);
        let rows: Vec<String> = out
            .outer_iter()
            .map(|r| r.iter().map(|&v| if v != 0 { '#' } else { '.' }).collect())
            .collect();
        assert_eq!(
            rows,
            vec![".......", ".####..", ".###...", ".##....", ".#.....", ".......", "......."]
        );
        draw_lines(&xs, &ys, &mut out);
        assert_eq!(out[[1, 5]], 1);
        assert_eq!(out[[5, 1]], 1);
        assert_eq!(out.sum(), 15);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn the_filled_region_holds_the_contour_and_the_seed(
            values in proptest::collection::vec(0i16..3, 6 * 7),
            seed in (0usize..6, 0usize..7),
        ) {
            let d = Array3::from_shape_vec((1, 6, 7), values).unwrap();
            let t = level_tracing(d.view(), [0, seed.0, seed.1], SliceAxis::K).unwrap();
            let threshold = d[[0, seed.0, seed.1]];
            for p in &t.contour_kji {
                // Every contour pixel is in the region.
                prop_assert!(d[*p] >= threshold);
                if t.contour_kji.len() >= 3 {
                    prop_assert_eq!(t.mask[*p], 1);
                }
            }
            // Consecutive contour pixels are 8-neighbours.
            for w in t.contour_kji.windows(2) {
                prop_assert!(w[0][1].abs_diff(w[1][1]) <= 1 && w[0][2].abs_diff(w[1][2]) <= 1);
            }
        }
    }
}
