//! Snapshot pictures of a labelled volume, for checking results by eye: an axial, a
//! coronal and a sagittal slice side by side, in a grey-level window, with the outline of
//! every label drawn in its colour; and a PNG writer ([`write_png`]).
//!
//! The slices are shown as radiologists read them (the "radiological convention" of
//! Slicer's and every PACS viewer's default layout):
//!
//! | panel | screen right | screen down | slice through |
//! |---|---|---|---|
//! | axial | patient's left (L) | posterior (P) | the point's S position |
//! | coronal | patient's left (L) | inferior (I) | the point's P position |
//! | sagittal | posterior (P) | inferior (I) | the point's L position |
//!
//! so the patient's right is on the image's left and anterior is up in the axial view,
//! superior is up in the coronal and sagittal views, and anterior is left in the sagittal
//! view. Which array axis is which comes from the geometry's direction matrix (LPS): each
//! patient axis takes the array axis closest to it, so an oblique volume is shown along its
//! nearest array axes, not resampled onto the patient's axes. All three panels share one
//! pixel size in mm (square pixels), so anisotropic voxels (8 mm slices) look anatomically
//! right; the intensities are interpolated bilinearly within the slice, the labels taken
//! from the nearest voxel. An outline pixel is a labelled pixel with a 4-neighbour of
//! another label or outside the panel.

use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::volume::{AnyVolume, Geometry, Labelmap, Scalar};
use ndarray::{Array2, Array3};
use std::path::Path;

/// An 8-bit RGB image, rows top to bottom, `3 * width` bytes per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// An image of one colour.
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Self {
        RgbImage {
            width,
            height,
            pixels: rgb.repeat(width * height),
        }
    }

    /// The colour at column `x`, row `y` (row 0 at the top).
    ///
    /// # Panics
    /// When `(x, y)` is outside the image.
    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        assert!(
            x < self.width && y < self.height,
            "pixel ({x}, {y}) outside"
        );
        let o = 3 * (y * self.width + x);
        [self.pixels[o], self.pixels[o + 1], self.pixels[o + 2]]
    }

    fn set(&mut self, x: usize, y: usize, rgb: [u8; 3]) {
        let o = 3 * (y * self.width + x);
        self.pixels[o..o + 3].copy_from_slice(&rgb);
    }
}

/// A grey-level window: `level - width / 2` is black, `level + width / 2` white.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub width: f64,
    pub level: f64,
}

impl Window {
    /// The lung window, W 1500 L -600 (HU).
    pub const LUNG: Window = Window {
        width: 1500.0,
        level: -600.0,
    };

    fn grey(&self, value: f64) -> u8 {
        let lo = self.level - self.width / 2.0;
        let t = ((value - lo) / self.width).clamp(0.0, 1.0);
        if t.is_nan() {
            0
        } else {
            (t * 255.0).round() as u8
        }
    }
}

/// The three panels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Axial,
    Coronal,
    Sagittal,
}

impl View {
    /// The views in the order the snapshot shows them.
    pub const ALL: [View; 3] = [View::Axial, View::Coronal, View::Sagittal];

    /// (LPS axis, sign) of the screen's right, of the screen's down, and the LPS axis
    /// the slice is normal to.
    fn screen(self) -> ((usize, f64), (usize, f64), usize) {
        const X: usize = 0; // towards the patient's left
        const Y: usize = 1; // towards posterior
        const Z: usize = 2; // towards superior
        match self {
            View::Axial => ((X, 1.0), (Y, 1.0), Z),
            View::Coronal => ((X, 1.0), (Z, -1.0), Y),
            View::Sagittal => ((Y, 1.0), (Z, -1.0), X),
        }
    }
}

/// How [`render_snapshot`] draws.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotOptions {
    /// Grey-level window of the intensities (default [`Window::LUNG`]).
    pub window: Window,
    /// Size in pixels of the largest panel side: the volume's longest extent (mm) is
    /// drawn over this many pixels, and every panel uses the same mm per pixel.
    pub panel_px: usize,
    /// Black columns between panels.
    pub gap_px: usize,
    /// Colour (red, green, blue in 0..=1) of each label's outline; labels not listed
    /// are drawn in yellow.
    pub colors: Vec<(u16, [f64; 3])>,
    /// The point the slices pass through, as a continuous `[i, j, k]` index; `None`
    /// takes the labels' centre of mass (the volume's centre when nothing is labelled).
    pub center_ijk: Option<[f64; 3]>,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            window: Window::LUNG,
            panel_px: 384,
            gap_px: 4,
            colors: Vec::new(),
            center_ijk: None,
        }
    }
}

/// Draws the axial, coronal and sagittal panels of `volume` with the outlines of
/// `labels` (on the same lattice), left to right, on a black background; panels are
/// aligned at the top. See the module documentation for the orientation.
///
/// # Errors
/// [`Error::InvalidArgument`] when `labels` does not have the volume's size, or the volume
/// is empty.
///
/// # Examples
/// ```
/// use segkit::io::snapshot::{render_snapshot, SnapshotOptions};
/// use segkit::volume::{AnyVolume, Geometry, Volume};
/// let ct = Volume::new(ndarray::Array3::<i16>::from_elem((4, 4, 4), -1000), Geometry::default());
/// let labels = Volume::new(ndarray::Array3::<u16>::zeros((4, 4, 4)), Geometry::default());
/// let options = SnapshotOptions { panel_px: 8, gap_px: 2, ..Default::default() };
/// let image = render_snapshot(&AnyVolume::I16(ct), &labels, &options).unwrap();
/// assert_eq!((image.width, image.height), (3 * 8 + 2 * 2, 8));
/// ```
pub fn render_snapshot(
    volume: &AnyVolume,
    labels: &Labelmap,
    options: &SnapshotOptions,
) -> Result<RgbImage> {
    let size = volume.size_ijk();
    if labels.size_ijk() != size {
        return Err(Error::InvalidArgument(format!(
            "snapshot: labels of {:?} voxels on a volume of {:?} voxels",
            labels.size_ijk(),
            size
        )));
    }
    if size.contains(&0) {
        return Err(Error::InvalidArgument(format!(
            "snapshot: the volume is empty ({size:?} voxels)"
        )));
    }
    let geometry = volume.geometry();
    let center = options
        .center_ijk
        .unwrap_or_else(|| center_of_mass_ijk(&labels.data));
    let extent_mm = (0..3).map(|a| size[a] as f64 * geometry.spacing[a]);
    let pixel_mm = extent_mm.fold(0.0, f64::max) / options.panel_px.max(1) as f64;
    let axes = patient_axes(geometry);
    let panels: Vec<RgbImage> = View::ALL
        .iter()
        .map(|&view| {
            let plan = PanelPlan::new(view, &axes, size, geometry.spacing, center, pixel_mm);
            let grey = crate::with_volume!(volume, v => plan.sample_bilinear(&v.data));
            let label = plan.sample_nearest(&labels.data);
            draw_panel(&grey, &label, options)
        })
        .collect();
    let gaps = options.gap_px * (panels.len() - 1);
    let width = panels.iter().map(|p| p.width).sum::<usize>() + gaps;
    let height = panels.iter().map(|p| p.height).max().unwrap_or(1);
    let mut image = RgbImage::filled(width, height, [0, 0, 0]);
    let mut x0 = 0;
    for panel in &panels {
        for y in 0..panel.height {
            let (src, dst) = (3 * y * panel.width, 3 * (y * width + x0));
            image.pixels[dst..dst + 3 * panel.width]
                .copy_from_slice(&panel.pixels[src..src + 3 * panel.width]);
        }
        x0 += panel.width + options.gap_px;
    }
    Ok(image)
}

/// The centre of mass of the non-zero voxels as a continuous `[i, j, k]` index, or the
/// array's centre when every voxel is zero.
pub fn center_of_mass_ijk(labels: &Array3<u16>) -> [f64; 3] {
    let (nk, nj, ni) = labels.dim();
    let mut sum = [0.0f64; 3];
    let mut count = 0u64;
    for ((k, j, i), &l) in labels.indexed_iter() {
        if l != 0 {
            sum[0] += i as f64;
            sum[1] += j as f64;
            sum[2] += k as f64;
            count += 1;
        }
    }
    if count == 0 {
        return [ni, nj, nk].map(|n| (n as f64 - 1.0) / 2.0);
    }
    sum.map(|s| s / count as f64)
}

/// For each LPS axis (x, y, z): the array axis (0 = i, 1 = j, 2 = k) closest to it and
/// whether the index grows along (+1) or against (-1) it. The pairing maximises the sum
/// of the absolute cosines over the 6 permutations, so every array axis is used once.
fn patient_axes(g: &Geometry) -> [(usize, f64); 3] {
    const PERMUTATIONS: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    let score = |p: &[usize; 3]| (0..3).map(|r| g.direction[r][p[r]].abs()).sum::<f64>();
    let best = PERMUTATIONS
        .iter()
        .max_by(|a, b| score(a).total_cmp(&score(b)))
        .copied()
        .unwrap_or([0, 1, 2]);
    [0, 1, 2].map(|r| {
        let a = best[r];
        (a, if g.direction[r][a] < 0.0 { -1.0 } else { 1.0 })
    })
}

/// Where each panel pixel samples the array.
struct PanelPlan {
    width: usize,
    height: usize,
    /// Array axis (0 = i) along the screen's x and y, and the normal's array axis.
    x_axis: usize,
    y_axis: usize,
    normal_axis: usize,
    /// Voxel index (nearest) of the slice along the normal axis.
    slice: usize,
    /// Continuous index along `x_axis` of each column, and along `y_axis` of each row.
    x_index: Vec<f64>,
    y_index: Vec<f64>,
}

impl PanelPlan {
    fn new(
        view: View,
        axes: &[(usize, f64); 3],
        size: [usize; 3],
        spacing: [f64; 3],
        center_ijk: [f64; 3],
        pixel_mm: f64,
    ) -> Self {
        let ((right, right_sign), (down, down_sign), normal) = view.screen();
        let (x_axis, x_sign) = axes[right];
        let (y_axis, y_sign) = axes[down];
        let normal_axis = axes[normal].0;
        // Pixel centres spread evenly over the axis's extent, reversed when the array
        // index runs against the screen direction.
        let indices = |axis: usize, flip: bool| -> Vec<f64> {
            let n = size[axis];
            let px = ((n as f64 * spacing[axis] / pixel_mm).round() as usize).max(1);
            (0..px)
                .map(|p| {
                    let t = (p as f64 + 0.5) * n as f64 / px as f64 - 0.5;
                    if flip {
                        n as f64 - 1.0 - t
                    } else {
                        t
                    }
                })
                .collect()
        };
        let x_index = indices(x_axis, x_sign != right_sign);
        let y_index = indices(y_axis, y_sign != down_sign);
        let last = size[normal_axis] - 1;
        let slice = center_ijk[normal_axis].round().clamp(0.0, last as f64) as usize;
        PanelPlan {
            width: x_index.len(),
            height: y_index.len(),
            x_axis,
            y_axis,
            normal_axis,
            slice,
            x_index,
            y_index,
        }
    }

    /// The `[k, j, i]` array index of in-plane indices `(x, y)` on the slice.
    fn kji(&self, x: usize, y: usize) -> [usize; 3] {
        let mut ijk = [0usize; 3];
        ijk[self.x_axis] = x;
        ijk[self.y_axis] = y;
        ijk[self.normal_axis] = self.slice;
        [ijk[2], ijk[1], ijk[0]]
    }

    fn sample_bilinear<T: Scalar>(&self, data: &Array3<T>) -> Array2<f64> {
        let (nk, nj, ni) = data.dim();
        let n = [ni, nj, nk];
        let (nx, ny) = (n[self.x_axis], n[self.y_axis]);
        let split = |t: f64, n: usize| {
            let t = t.clamp(0.0, (n - 1) as f64);
            let lo = t.floor() as usize;
            (lo, (lo + 1).min(n - 1), t - lo as f64)
        };
        Array2::from_shape_fn((self.height, self.width), |(py, px)| {
            let (x0, x1, wx) = split(self.x_index[px], nx);
            let (y0, y1, wy) = split(self.y_index[py], ny);
            let v = |x, y| data[self.kji(x, y)].to_f64();
            let top = v(x0, y0) * (1.0 - wx) + v(x1, y0) * wx;
            let bottom = v(x0, y1) * (1.0 - wx) + v(x1, y1) * wx;
            top * (1.0 - wy) + bottom * wy
        })
    }

    fn sample_nearest(&self, data: &Array3<u16>) -> Array2<u16> {
        let (nk, nj, ni) = data.dim();
        let n = [ni, nj, nk];
        let near = |t: f64, n: usize| t.round().clamp(0.0, (n - 1) as f64) as usize;
        Array2::from_shape_fn((self.height, self.width), |(py, px)| {
            let x = near(self.x_index[px], n[self.x_axis]);
            let y = near(self.y_index[py], n[self.y_axis]);
            data[self.kji(x, y)]
        })
    }
}

fn draw_panel(grey: &Array2<f64>, labels: &Array2<u16>, options: &SnapshotOptions) -> RgbImage {
    let (height, width) = grey.dim();
    let mut image = RgbImage::filled(width, height, [0, 0, 0]);
    let color = |label: u16| {
        let c = options
            .colors
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, c)| *c)
            .unwrap_or([1.0, 1.0, 0.0]);
        c.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
    };
    for ((y, x), &value) in grey.indexed_iter() {
        let g = options.window.grey(value);
        image.set(x, y, [g, g, g]);
    }
    for ((y, x), &l) in labels.indexed_iter() {
        if l == 0 {
            continue;
        }
        let differs = |yy: Option<usize>, xx: Option<usize>| match (yy, xx) {
            (Some(yy), Some(xx)) if yy < height && xx < width => labels[[yy, xx]] != l,
            _ => true,
        };
        let edge = differs(y.checked_sub(1), Some(x))
            || differs(Some(y + 1), Some(x))
            || differs(Some(y), x.checked_sub(1))
            || differs(Some(y), Some(x + 1));
        if edge {
            image.set(x, y, color(l));
        }
    }
    image
}

/// The PNG bytes of `image` (8-bit RGB, default compression).
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(&mut out, image).map_err(|e| Error::InvalidArgument(format!("PNG: {e}")))?;
    Ok(out)
}

fn encode_into<W: std::io::Write>(w: W, image: &RgbImage) -> Result<(), png::EncodingError> {
    let (width, height) = (image.width as u32, image.height as u32);
    let mut encoder = png::Encoder::new(w, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&image.pixels)?;
    writer.finish()
}

/// Writes `image` to `path` as a PNG, atomically.
pub fn write_png(path: &Path, image: &RgbImage) -> Result<()> {
    write_atomic(path, |w| {
        encode_into(w, image).map_err(|e| Error::io(path, std::io::Error::other(e)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Volume;

    const AIR: i16 = -1000;
    const MARK: i16 = 100;

    /// A volume on `geometry` whose voxel at LPS point `p` holds `world(p)`.
    fn sample_world(
        geometry: Geometry,
        size: [usize; 3],
        world: impl Fn([f64; 3]) -> i16,
    ) -> Volume<i16> {
        let data = Array3::from_shape_fn((size[2], size[1], size[0]), |(k, j, i)| {
            world(geometry.index_to_lps([i as f64, j as f64, k as f64]))
        });
        Volume::new(data, geometry)
    }

    /// A 6 (L-R) x 5 (A-P) x 4 (I-S) mm box at 1 mm: air with one bright voxel in its
    /// right-anterior-superior corner (x = 0, y = 0, z = 3), which is also label 1.
    fn marker_world(p: [f64; 3]) -> i16 {
        if p.map(|v| v.round() as i64) == [0, 0, 3] {
            MARK
        } else {
            AIR
        }
    }

    fn render(geometry: Geometry, size: [usize; 3]) -> RgbImage {
        let ct = sample_world(geometry, size, marker_world);
        let labels = Volume::new(ct.data.mapv(|v| u16::from(v == MARK)), geometry);
        let options = SnapshotOptions {
            panel_px: 6,
            gap_px: 1,
            colors: vec![(1, [1.0, 0.0, 0.0])],
            ..Default::default()
        };
        render_snapshot(&AnyVolume::I16(ct), &labels, &options).unwrap()
    }

    #[test]
    fn the_marker_is_where_a_radiologist_expects_it() {
        // Identity: i towards L, j towards P, k towards S.
        let image = render(Geometry::default(), [6, 5, 4]);
        // Axial 6x5, coronal 6x4, sagittal 5x4, one black column between panels.
        assert_eq!((image.width, image.height), (6 + 1 + 6 + 1 + 5, 5));
        let red = [255, 0, 0];
        // Axial: patient's right on the image's left, anterior up: top-left.
        assert_eq!(image.get(0, 0), red);
        // Coronal: right on the left, superior up: top-left of the second panel.
        assert_eq!(image.get(7, 0), red);
        // Sagittal: anterior on the left, superior up: top-left of the third panel.
        assert_eq!(image.get(14, 0), red);
        // Elsewhere air, dark grey in the lung window ((-1000 + 1350) / 1500 * 255).
        let grey_air = Window::LUNG.grey(AIR as f64);
        assert_eq!(image.get(5, 4), [grey_air; 3]);
        assert_eq!(image.get(12, 3), [grey_air; 3]);
        // The gap columns and the area below the shorter panels stay black.
        assert_eq!(image.get(6, 0), [0, 0, 0]);
        assert_eq!(image.get(8, 4), [0, 0, 0]);
    }

    #[test]
    fn the_same_anatomy_gives_the_same_picture_in_any_array_layout() {
        let reference = render(Geometry::default(), [6, 5, 4]);
        // i towards R, j towards A, k towards S (RAS-like storage): origin at the far
        // corner so the same box is covered.
        let ras = Geometry::from_axes(
            [5.0, 4.0, 0.0],
            [1.0; 3],
            [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        );
        assert_eq!(render(ras, [6, 5, 4]), reference);
        // Sagittal storage: i towards P, j towards I, k towards L.
        let sagittal = Geometry::from_axes(
            [0.0, 0.0, 3.0],
            [1.0; 3],
            [[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]],
        );
        assert_eq!(render(sagittal, [5, 4, 6]), reference);
        // Nearly axial with a small rotation: still read along the nearest axes.
        let c = 0.05f64.cos();
        let s = 0.05f64.sin();
        let tilted = Geometry::from_axes(
            [0.0; 3],
            [1.0; 3],
            [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]],
        );
        assert_eq!(render(tilted, [6, 5, 4]).get(0, 0), [255, 0, 0]);
    }

    #[test]
    fn thick_slices_are_stretched_to_square_pixels() {
        // 4 x 4 voxels of 1 mm in-plane, 2 slices of 4 mm: 4 x 8 mm in the coronal view.
        let g = Geometry {
            spacing: [1.0, 1.0, 4.0],
            ..Geometry::default()
        };
        let ct = Volume::new(Array3::<i16>::from_elem((2, 4, 4), AIR), g);
        let labels = Volume::new(Array3::<u16>::zeros((2, 4, 4)), g);
        let options = SnapshotOptions {
            panel_px: 8,
            gap_px: 0,
            ..Default::default()
        };
        let image = render_snapshot(&AnyVolume::I16(ct), &labels, &options).unwrap();
        // Longest extent 8 mm over 8 px: 1 mm pixels. Axial 4x4, coronal 4x8, sagittal 4x8.
        assert_eq!((image.width, image.height), (12, 8));
    }

    #[test]
    fn outlines_are_the_boundary_pixels_of_each_label() {
        // A 5x5 axial slice with a 3x3 square of label 2 in the middle: 8 outline
        // pixels around an unlabelled-looking centre.
        let g = Geometry::default();
        let ct = Volume::new(Array3::<i16>::from_elem((1, 5, 5), AIR), g);
        let mut labels = Volume::new(Array3::<u16>::zeros((1, 5, 5)), g);
        labels.data.slice_mut(ndarray::s![0, 1..4, 1..4]).fill(2);
        let options = SnapshotOptions {
            panel_px: 5,
            gap_px: 0,
            colors: vec![(2, [0.0, 0.0, 1.0])],
            ..Default::default()
        };
        let image = render_snapshot(&AnyVolume::I16(ct), &labels, &options).unwrap();
        let blue = [0, 0, 255];
        let outline: Vec<(usize, usize)> = (0..5)
            .flat_map(|y| (0..5).map(move |x| (x, y)))
            .filter(|&(x, y)| image.get(x, y) == blue)
            .collect();
        assert_eq!(outline.len(), 8, "{outline:?}");
        assert_ne!(image.get(2, 2), blue);
        assert_ne!(image.get(0, 0), blue);
    }

    #[test]
    fn mismatched_labels_are_refused() {
        let g = Geometry::default();
        let ct = Volume::new(Array3::<i16>::zeros((2, 2, 2)), g);
        let labels = Volume::new(Array3::<u16>::zeros((2, 2, 3)), g);
        let err = render_snapshot(&AnyVolume::I16(ct), &labels, &SnapshotOptions::default());
        assert!(err.unwrap_err().to_string().contains("labels of"));
    }

    #[test]
    fn png_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let image = render(Geometry::default(), [6, 5, 4]);
        write_png(&path, &image).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width as usize, info.height as usize), (19, 5));
        assert_eq!(&buf[..info.buffer_size()], &image.pixels[..]);
    }
}
