//! Connected components of a 3-D mask: run-based two-pass labelling with union-find.
//!
//! # Method
//! The volume is scanned row by row (a row is one `(k, j)` line along `i`). Each row is
//! cut into *runs*, maximal stretches of foreground voxels. A run touches a run of an
//! earlier neighbouring row when their `i` intervals overlap (6-connectivity), or overlap
//! once widened by one voxel (the diagonal neighbours of 18- and 26-connectivity). Touching
//! runs are merged in a union-find forest whose root is always the run seen first, so the
//! component of a run is known by the earliest run in raster order. Labels are then
//! handed out in the order components first appear in the raster scan (`i` fastest, then
//! `j`, then `k`): the order of ITK's `ConnectedComponentImageFilter`.
//!
//! Work and memory are proportional to the number of runs, not voxels, which makes this
//! several times faster than voxel-wise labelling on segmentation masks (long runs).
//! The idea of labelling runs is old (Rosenfeld and Pfaltz 1966; He, Chao and Suzuki 2008
//! for the run-based union-find variant); cc3d's documentation discusses the trade-offs.
//!
//! # Example
//! ```
//! use ndarray::Array3;
//! use segkit::kernels::components::{label_runs, Connectivity};
//! // Two voxels touching only at a corner: one component with 26-, two with 6-connectivity.
//! let mut m = Array3::<u8>::zeros((2, 2, 2));
//! m[[0, 0, 0]] = 1;
//! m[[1, 1, 1]] = 1;
//! assert_eq!(label_runs(m.view(), |&v| v != 0, Connectivity::Faces6).sizes.len(), 2);
//! assert_eq!(label_runs(m.view(), |&v| v != 0, Connectivity::Corners26).sizes.len(), 1);
//! ```

use ndarray::{s, Array3, ArrayView3, ArrayViewMut2};

/// Which neighbours touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Connectivity {
    /// Voxels sharing a face (6 neighbours): ITK's `FullyConnected = false`, Slicer's default.
    #[default]
    Faces6,
    /// Voxels sharing a face or an edge (18 neighbours).
    Edges18,
    /// Voxels sharing a face, an edge or a corner (26 neighbours).
    Corners26,
}

/// One run: `len` foreground voxels starting at flat index `start` (C order, `i` fastest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub start: usize,
    pub len: u32,
    /// Component label, 1-based, in order of first appearance in the raster scan.
    pub label: u32,
}

/// The components of a mask, as runs with labels.
#[derive(Debug, Clone)]
pub struct Components {
    /// Shape `(nk, nj, ni)` of the labelled array.
    pub shape: (usize, usize, usize),
    /// All runs in raster order.
    pub runs: Vec<Run>,
    /// `sizes[l - 1]` = number of voxels of component `l`.
    pub sizes: Vec<u64>,
}

impl Components {
    /// Labels ordered as ITK's `RelabelComponentImageFilter` orders them: by size,
    /// largest first; ties keep raster order of the components' first voxels.
    /// Returns the old labels in their new order (`order[0]` is the new label 1).
    pub fn by_size(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (1..=self.sizes.len() as u32).collect();
        // Stable sort: equal sizes keep first-appearance order.
        order.sort_by(|&a, &b| self.sizes[b as usize - 1].cmp(&self.sizes[a as usize - 1]));
        order
    }

    /// Writes `value_of(label)` into `out` over every run whose value is non-zero.
    pub fn paint<T: Copy>(&self, out: &mut Array3<T>, value_of: impl Fn(u32) -> Option<T>) {
        let Some(flat) = out.as_slice_mut() else {
            // Arrays built by segkit are always standard layout; fall back to indexing.
            let (_, nj, ni) = self.shape;
            for run in &self.runs {
                if let Some(v) = value_of(run.label) {
                    for n in run.start..run.start + run.len as usize {
                        let (k, rem) = (n / (nj * ni), n % (nj * ni));
                        out[[k, rem / ni, rem % ni]] = v;
                    }
                }
            }
            return;
        };
        for run in &self.runs {
            if let Some(v) = value_of(run.label) {
                flat[run.start..run.start + run.len as usize].fill(v);
            }
        }
    }

    /// The label of the component holding voxel `[k, j, i]`, if it is foreground.
    pub fn label_at(&self, kji: [usize; 3]) -> Option<u32> {
        let (_, nj, ni) = self.shape;
        let n = (kji[0] * nj + kji[1]) * ni + kji[2];
        // Runs are sorted by start: find the last run starting at or before n.
        let idx = self.runs.partition_point(|r| r.start <= n);
        let run = self.runs.get(idx.checked_sub(1)?)?;
        (n < run.start + run.len as usize).then_some(run.label)
    }
}

/// Labels the components of the voxels where `is_foreground` holds.
///
/// Returns every foreground run with its component label (1-based, in order of first
/// appearance in raster order) and the size of each component. An empty mask gives no
/// runs and no sizes. Voxels outside the array are background: nothing wraps around.
pub fn label_runs<T>(
    mask: ArrayView3<T>,
    is_foreground: impl Fn(&T) -> bool,
    connectivity: Connectivity,
) -> Components {
    let shape = mask.dim();
    let (nk, nj, ni) = shape;
    let rows = nk * nj;

    // Pass 1: runs of every row, in raster order.
    let mut runs: Vec<Run> = Vec::new();
    let mut row_start: Vec<u32> = Vec::with_capacity(rows + 1);
    for k in 0..nk {
        for j in 0..nj {
            row_start.push(runs.len() as u32);
            let base = (k * nj + j) * ni;
            let mut i = 0;
            let row = mask.slice(ndarray::s![k, j, ..]);
            while i < ni {
                if is_foreground(&row[i]) {
                    let s = i;
                    while i < ni && is_foreground(&row[i]) {
                        i += 1;
                    }
                    runs.push(Run {
                        start: base + s,
                        len: (i - s) as u32,
                        label: 0,
                    });
                } else {
                    i += 1;
                }
            }
        }
    }
    row_start.push(runs.len() as u32);

    // Neighbouring earlier rows as (dj, dk, widen): rows already scanned.
    let neighbours: &[(isize, isize, usize)] = match connectivity {
        Connectivity::Faces6 => &[(-1, 0, 0), (0, -1, 0)],
        Connectivity::Edges18 => &[(-1, 0, 1), (0, -1, 1), (-1, -1, 0), (1, -1, 0)],
        Connectivity::Corners26 => &[(-1, 0, 1), (0, -1, 1), (-1, -1, 1), (1, -1, 1)],
    };

    // Pass 2: union touching runs. Parent pointers always point to an earlier run.
    let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
    for k in 0..nk {
        for j in 0..nj {
            let r = k * nj + j;
            let (a0, a1) = (row_start[r] as usize, row_start[r + 1] as usize);
            if a0 == a1 {
                continue;
            }
            for &(dj, dk, widen) in neighbours {
                let (jj, kk) = (j as isize + dj, k as isize + dk);
                if jj < 0 || kk < 0 || jj >= nj as isize {
                    continue;
                }
                let rr = kk as usize * nj + jj as usize;
                let (b0, b1) = (row_start[rr] as usize, row_start[rr + 1] as usize);
                union_overlapping(&runs, &mut parent, (a0, a1), (b0, b1), ni, widen);
            }
        }
    }

    // Pass 3: labels in order of first appearance; sizes.
    let mut sizes: Vec<u64> = Vec::new();
    let mut label_of_root: Vec<u32> = vec![0; runs.len()];
    for (n, run) in runs.iter_mut().enumerate() {
        let root = find(&mut parent, n as u32) as usize;
        if label_of_root[root] == 0 {
            sizes.push(0);
            label_of_root[root] = sizes.len() as u32;
        }
        run.label = label_of_root[root];
        sizes[run.label as usize - 1] += run.len as u64;
    }
    Components { shape, runs, sizes }
}

/// Unions runs of row A (`a`) with the runs of row B (`b`) that touch them: their column
/// intervals overlap once one of them is widened by `widen` voxels on each side. Both rows
/// are sorted by column.
///
/// The walk compares the intervals as they are (disjoint within a row, with gaps of at
/// least one voxel between runs) and advances the run that ends first: a run that ends
/// first cannot touch the other row's next run, even widened by one.
fn union_overlapping(
    runs: &[Run],
    parent: &mut [u32],
    a: (usize, usize),
    b: (usize, usize),
    ni: usize,
    widen: usize,
) {
    let span = |r: &Run| (r.start % ni, r.start % ni + r.len as usize); // [lo, hi)
    let (mut x, mut y) = (a.0, b.0);
    while x < a.1 && y < b.1 {
        let ((a_lo, a_hi), (b_lo, b_hi)) = (span(&runs[x]), span(&runs[y]));
        if a_lo < b_hi + widen && b_lo < a_hi + widen {
            union(parent, x as u32, y as u32);
        }
        if a_hi <= b_hi {
            x += 1;
        } else {
            y += 1;
        }
    }
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let p = parent[x as usize];
        parent[x as usize] = parent[p as usize];
        x = p;
    }
    x
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        // The earlier run stays the root, so roots are first appearances.
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

/// The 4-connected regions of one slice (given as a 1-slice 3-D view) where
/// `is_foreground` holds that do not touch the slice's border, as runs.
pub(crate) fn enclosed<T>(slice: ArrayView3<T>, is_foreground: impl Fn(&T) -> bool) -> Enclosed {
    let c = label_runs(slice, is_foreground, Connectivity::Faces6);
    let (_, nr, nc) = c.shape;
    let mut touches = vec![false; c.sizes.len()];
    for run in &c.runs {
        let row = run.start / nc;
        let first = run.start % nc;
        if row == 0 || row + 1 == nr || first == 0 || first + run.len as usize == nc {
            touches[run.label as usize - 1] = true;
        }
    }
    Enclosed {
        runs: c
            .runs
            .iter()
            .filter(|r| !touches[r.label as usize - 1])
            .map(|r| (r.start, r.len as usize))
            .collect(),
        columns: nc,
    }
}

/// Runs `(start, length)` of a slice in raster order.
pub(crate) struct Enclosed {
    pub(crate) runs: Vec<(usize, usize)>,
    pub(crate) columns: usize,
}

impl Enclosed {
    pub(crate) fn paint_into<T: Copy>(&self, out: &mut ArrayViewMut2<T>, value: T) {
        for &(start, len) in &self.runs {
            let (row, first) = (start / self.columns, start % self.columns);
            out.slice_mut(s![row, first..first + len]).fill(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn from_rows(nk: usize, nj: usize, ni: usize, s: &str) -> Array3<u8> {
        let v: Vec<u8> = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| u8::from(c == '#'))
            .collect();
        Array3::from_shape_vec((nk, nj, ni), v).unwrap()
    }

    fn labels(c: &Components) -> Array3<u32> {
        let (nk, nj, ni) = c.shape;
        let mut out = Array3::zeros((nk, nj, ni));
        c.paint(&mut out, Some);
        out
    }

    #[test]
    fn u_shape_joins_through_the_bottom_row() {
        // Two prongs that only meet at the last row: one component.
        let m = from_rows(1, 3, 5, "#...# #...# #####");
        let c = label_runs(m.view(), |&v| v != 0, Connectivity::Faces6);
        assert_eq!(c.sizes, vec![9]);
        assert!(labels(&c).iter().all(|&l| l <= 1));
    }

    #[test]
    fn diagonal_touch_depends_on_connectivity() {
        let m = from_rows(1, 2, 2, "#. .#");
        assert_eq!(
            label_runs(m.view(), |&v| v != 0, Connectivity::Faces6).sizes,
            vec![1, 1]
        );
        assert_eq!(
            label_runs(m.view(), |&v| v != 0, Connectivity::Edges18).sizes,
            vec![2]
        );
        // Across slices, corner only: 26 joins, 18 does not.
        let m = from_rows(2, 2, 2, "#. .. .. .#");
        assert_eq!(
            label_runs(m.view(), |&v| v != 0, Connectivity::Edges18)
                .sizes
                .len(),
            2
        );
        assert_eq!(
            label_runs(m.view(), |&v| v != 0, Connectivity::Corners26)
                .sizes
                .len(),
            1
        );
    }

    #[test]
    fn labels_follow_first_appearance_and_ties_keep_raster_order() {
        // A = {0, 5} (2 voxels), B = {2, 3, 4} (3), C = {12} (1), D = {14} (1).
        let m = from_rows(1, 3, 5, "#.### #.... ..#.#");
        let c = label_runs(m.view(), |&v| v != 0, Connectivity::Faces6);
        assert_eq!(c.sizes, vec![2, 3, 1, 1]);
        // By size, largest first; the tie between C and D keeps raster order.
        assert_eq!(c.by_size(), vec![2, 1, 3, 4]);
        assert_eq!(c.label_at([0, 1, 0]), Some(1));
        assert_eq!(c.label_at([0, 2, 4]), Some(4));
        assert_eq!(c.label_at([0, 1, 1]), None);
    }

    #[test]
    fn components_do_not_wrap_across_row_ends() {
        // The last voxel of row 0 and the first voxel of row 1 are adjacent in memory only.
        let m = from_rows(1, 2, 3, "..# #..");
        assert_eq!(
            label_runs(m.view(), |&v| v != 0, Connectivity::Corners26)
                .sizes
                .len(),
            2
        );
    }

    #[test]
    fn empty_and_full_masks() {
        let m = Array3::<u8>::zeros((2, 3, 4));
        let c = label_runs(m.view(), |&v| v != 0, Connectivity::Faces6);
        assert!(c.sizes.is_empty() && c.runs.is_empty());
        let m = Array3::<u8>::ones((2, 3, 4));
        assert_eq!(
            label_runs(m.view(), |&v| v != 0, Connectivity::Faces6).sizes,
            vec![24]
        );
    }

    /// Reference labelling: breadth-first flood fill from each unlabelled voxel in raster order.
    fn naive(m: &Array3<u8>, conn: Connectivity) -> Array3<u32> {
        let (nk, nj, ni) = m.dim();
        let mut out = Array3::<u32>::zeros((nk, nj, ni));
        let mut next = 0;
        let max_d = match conn {
            Connectivity::Faces6 => 1,
            Connectivity::Edges18 => 2,
            Connectivity::Corners26 => 3,
        };
        for start in ndarray::indices((nk, nj, ni)) {
            let start = [start.0, start.1, start.2];
            if m[start] == 0 || out[start] != 0 {
                continue;
            }
            next += 1;
            out[start] = next;
            let mut queue = std::collections::VecDeque::from([start]);
            while let Some(p) = queue.pop_front() {
                for dk in -1i64..=1 {
                    for dj in -1i64..=1 {
                        for di in -1i64..=1 {
                            let d = dk.abs() + dj.abs() + di.abs();
                            if d == 0 || d > max_d {
                                continue;
                            }
                            let q = [p[0] as i64 + dk, p[1] as i64 + dj, p[2] as i64 + di];
                            if q.iter().any(|&x| x < 0)
                                || q[0] >= nk as i64
                                || q[1] >= nj as i64
                                || q[2] >= ni as i64
                            {
                                continue;
                            }
                            let q = [q[0] as usize, q[1] as usize, q[2] as usize];
                            if m[q] != 0 && out[q] == 0 {
                                out[q] = next;
                                queue.push_back(q);
                            }
                        }
                    }
                }
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn matches_flood_fill_labelling(
            (nk, nj, ni) in (1usize..5, 1usize..6, 1usize..7),
            seed in proptest::collection::vec(0u8..3, 5 * 6 * 7),
            conn in proptest::sample::select(vec![
                Connectivity::Faces6, Connectivity::Edges18, Connectivity::Corners26,
            ]),
        ) {
            let v: Vec<u8> = seed[..nk * nj * ni].iter().map(|&x| u8::from(x == 0)).collect();
            let m = Array3::from_shape_vec((nk, nj, ni), v).unwrap();
            let c = label_runs(m.view(), |&v| v != 0, conn);
            // Same labels, in the same (raster first-appearance) order.
            proptest::prop_assert_eq!(labels(&c), naive(&m, conn));
            // Flipping the volume does not change the number of components.
            let mut flipped = m.clone();
            flipped.invert_axis(ndarray::Axis(0));
            flipped.invert_axis(ndarray::Axis(2));
            let flipped = flipped.as_standard_layout().to_owned();
            let cf = label_runs(flipped.view(), |&v| v != 0, conn);
            proptest::prop_assert_eq!(cf.sizes.len(), c.sizes.len());
        }
    }
}
