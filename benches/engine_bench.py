"""Engine benchmark: segkit's gRPC engine beside Slicer's own VTK classes, in one run.

Builds a 512x512xN int16 chest CT from the real slices of `lung_pet_ct_dx/Lung_Dx-A0002`
(30 slices, read with SimpleITK, repeated back and forth so neighbouring slices stay
continuous), starts `segkit serve` (the release binary; built with `cargo build --release`
when absent), uploads the volume once, and measures, alternating segkit and the reference
in every repeat:

- upload: the whole volume streamed in the engine's recommended chunks;
- that a second effect sends no volume bytes: the bytes the client writes on the wire
  (through a counting TCP proxy) are those of the request message plus HTTP/2 framing;
- Threshold (lung range): the engine's `compute_seconds` beside `vtk.vtkImageThreshold` on
  the same array and beside a plain memory copy (`arr.copy()`); target: within 2x of the
  copy;
- Islands, KEEP_LARGEST_ISLAND with MinimumSize 1000 on the threshold result: the engine's
  `compute_seconds` beside `slicer.vtkITKIslandMath` as Slicer's effect calls it (cast to
  uint32, FullyConnected off, MinimumSize 1000, label 1 taken out with vtkImageThreshold);
  target: at least 5x faster;
- per-effect overhead: RPC wall time minus `compute_seconds`, as a fraction of compute.

The engine's answers are checked voxel for voxel against VTK's (a fast wrong answer does
not count). Absolute times on shared 2-core machines are noisy; the ratios are the figures
to report (reference time / segkit time: above 1 means segkit is faster).

Usage: .venv/bin/python benches/engine_bench.py [--slices 300] [--repeat 5] [--segkit target/release/segkit]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "conformance"))
import conformance_lib as cl  # noqa: E402

LUNG = (-950, -400)
MINIMUM_SIZE = 1000


# ---------------------------------------------------------------------------------------
# The volume


def build_volume(data: Path, slices: int) -> tuple[np.ndarray, cl.Lattice]:
    import SimpleITK as sitk

    folder = data / "lung_pet_ct_dx/Lung_Dx-A0002/series3_8mm_B40f"
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    if not files:
        sys.exit(f"no DICOM series in {folder} (set SEGKIT_TEST_DATA)")
    reader.SetFileNames(files)
    img = reader.Execute()
    src = sitk.GetArrayFromImage(img).astype(np.int16)  # [k][j][i], HU
    n = src.shape[0]
    order = [n - 1 - s % n if (s // n) % 2 else s % n for s in range(slices)]  # 0..n-1, n-1..0, ...
    arr = np.ascontiguousarray(src[order])
    sp = img.GetSpacing()
    lattice = cl.Lattice(
        size=(arr.shape[2], arr.shape[1], arr.shape[0]),
        origin=tuple(img.GetOrigin()),
        spacing=(sp[0], sp[1], 1.0),
        direction=tuple(img.GetDirection()),
    )
    return arr, lattice


# ---------------------------------------------------------------------------------------
# A TCP proxy that counts the bytes each way


class CountingProxy:
    def __init__(self, target: str):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.up = 0  # client -> engine
        self.down = 0
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(a, b, up), daemon=True).start()

    def _pump(self, src, dst, up):
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                with self.lock:
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def reset(self):
        with self.lock:
            self.up = self.down = 0

    def close(self):
        self.server.close()


# ---------------------------------------------------------------------------------------
# References: Slicer's VTK classes


def vtk_image(arr: np.ndarray, lattice: cl.Lattice):
    import vtk
    from vtk.util import numpy_support

    img = vtk.vtkImageData()
    img.SetDimensions(*lattice.size)
    img.SetSpacing(*lattice.spacing)
    img.SetOrigin(*lattice.origin)
    scalars = numpy_support.numpy_to_vtk(arr.ravel(), deep=False)
    img.GetPointData().SetScalars(scalars)
    img._keep = arr  # the VTK array borrows the numpy buffer
    return img


def vtk_array(img) -> np.ndarray:
    from vtk.util import numpy_support

    dims = img.GetDimensions()
    return numpy_support.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])


def vtk_threshold(img, lo, hi):
    """Slicer's Threshold effect: vtkImageThreshold.ThresholdBetween, in 1, out 0, uchar."""
    import vtk

    t = vtk.vtkImageThreshold()
    t.SetInputData(img)
    t.ThresholdBetween(lo, hi)
    t.SetInValue(1)
    t.SetOutValue(0)
    t.SetOutputScalarTypeToUnsignedChar()
    t0 = time.perf_counter()
    t.Update()
    return time.perf_counter() - t0, t.GetOutput()


def vtk_keep_largest(mask_img, minimum_size):
    """Slicer's Islands effect, KEEP_LARGEST_ISLAND: cast to uint32, vtkITKIslandMath
    (FullyConnected off, MinimumSize), then label 1 with vtkImageThreshold."""
    import slicer
    import vtk

    t0 = time.perf_counter()
    cast = vtk.vtkImageCast()
    cast.SetInputData(mask_img)
    cast.SetOutputScalarTypeToUnsignedInt()
    island = slicer.vtkITKIslandMath()
    island.SetInputConnection(cast.GetOutputPort())
    island.SetFullyConnected(False)
    island.SetMinimumSize(minimum_size)
    thresh = vtk.vtkImageThreshold()
    thresh.SetInputConnection(island.GetOutputPort())
    thresh.ThresholdBetween(1, 1)
    thresh.SetInValue(1)
    thresh.SetOutValue(0)
    thresh.SetOutputScalarTypeToUnsignedChar()
    thresh.Update()
    return time.perf_counter() - t0, thresh.GetOutput(), island.GetNumberOfIslands(), island.GetOriginalNumberOfIslands()


# ---------------------------------------------------------------------------------------


def segkit_binary(path: str | None) -> Path:
    p = Path(path) if path else REPO / "target/release/segkit"
    if not p.exists():
        print(f"{p} not found: cargo build --release (several minutes, once)", flush=True)
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    return p


def med(xs):
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--segkit", default=None, help="segkit binary (default target/release/segkit, built if absent)")
    ap.add_argument("--data", default=os.environ.get("SEGKIT_TEST_DATA", str(REPO.parent / "shared/data")))
    args = ap.parse_args()

    binary = segkit_binary(args.segkit)
    arr, lattice = build_volume(Path(args.data), args.slices)
    mib = arr.nbytes / 2**20
    print(f"volume: {lattice.size[0]}x{lattice.size[1]}x{lattice.size[2]} int16, {mib:.0f} MiB; engine {binary}")

    tmp = Path(tempfile.mkdtemp(prefix="engine-bench-"))
    pbs = cl.generate_stubs(tmp / "stubs")
    pb = pbs.pb
    engine = cl.start_engine(binary, tmp / "engine.log", "--cache-mb", "2048")
    channel = cl.open_channel(engine.address)
    stub = pbs.grpc.EngineStub(channel)
    proxy = None
    try:
        info = stub.GetEngineInfo(pb.GetEngineInfoRequest(), timeout=10)
        chunk = int(info.upload_chunk_bytes) or 4 << 20

        # --- upload ------------------------------------------------------------------
        uploads = []
        for _ in range(max(1, min(args.repeat, 3))):
            t0 = time.perf_counter()
            ref = cl.upload(stub, pb, arr, lattice, chunk_bytes=chunk, timeout=600)
            uploads.append(time.perf_counter() - t0)
        vid = ref.volume_id
        threshold_req = pb.ApplyEffectRequest(
            effect="Threshold",
            volume_id=vid,
            parameters={"MinimumThreshold": str(LUNG[0]), "MaximumThreshold": str(LUNG[1])},
        )

        # --- threshold: engine, VTK, numpy copy --------------------------------------
        vimg = vtk_image(arr, lattice)
        thr_engine, thr_wall, thr_vtk, copies = [], [], [], []
        thr_mask = None
        for n in range(args.repeat):
            t0 = time.perf_counter()
            r = stub.ApplyEffect(threshold_req, timeout=600)
            thr_wall.append(time.perf_counter() - t0)
            thr_engine.append(r.compute_seconds)
            t, vout = vtk_threshold(vimg, *LUNG)
            thr_vtk.append(t)
            t0 = time.perf_counter()
            c = arr.copy()
            copies.append(time.perf_counter() - t0)
            del c
            if n == 0:
                thr_mask = cl.mask_from_pb(pb, r.modifiers[0].mask, lattice)
                vtk_mask = vtk_array(vout)
                assert np.array_equal(thr_mask, vtk_mask), "Threshold differs from vtkImageThreshold"
                assert np.array_equal(thr_mask, ((arr >= LUNG[0]) & (arr <= LUNG[1])).astype(np.uint8))
        thr_voxels = int(thr_mask.sum())

        # --- islands: engine, vtkITKIslandMath ----------------------------------------
        islands_req = pb.ApplyEffectRequest(
            effect="Islands",
            volume_id=vid,
            segments=[cl.segment(pb, "lung", thr_mask, lattice)],
            selected_segment_id="lung",
            parameters={"Operation": "KEEP_LARGEST_ISLAND", "MinimumSize": str(MINIMUM_SIZE)},
        )
        mask_img = vtk_image(thr_mask, lattice)
        isl_engine, isl_wall, isl_vtk = [], [], []
        n_islands = None
        for n in range(args.repeat):
            t0 = time.perf_counter()
            r = stub.ApplyEffect(islands_req, timeout=600)
            isl_wall.append(time.perf_counter() - t0)
            isl_engine.append(r.compute_seconds)
            t, vout, kept, original = vtk_keep_largest(mask_img, MINIMUM_SIZE)
            isl_vtk.append(t)
            if n == 0:
                got = cl.mask_from_pb(pb, r.modifiers[0].mask, lattice)
                assert np.array_equal(got, vtk_array(vout)), "Islands differs from vtkITKIslandMath"
                largest = int(got.sum())
                n_islands = (original, kept)
                if "islands" in r.reported:
                    assert r.reported["islands"] == original, (r.reported["islands"], original)
                    assert r.reported["islands_kept"] == kept, (r.reported["islands_kept"], kept)

        # --- a second effect sends no volume bytes --------------------------------------
        proxy = CountingProxy(engine.address)
        pchannel = cl.open_channel(proxy.address)
        pstub = pbs.grpc.EngineStub(pchannel)
        pstub.GetEngineInfo(pb.GetEngineInfoRequest(), timeout=10)  # connection set up
        wire = {}
        for name, req in (("Threshold", threshold_req), ("Islands", islands_req)):
            proxy.reset()
            pstub.ApplyEffect(req, timeout=600)
            wire[name] = (proxy.up, req.ByteSize(), proxy.down)
            framing = 16 << 10  # HTTP/2 headers, frame headers, window updates
            assert proxy.up <= req.ByteSize() + framing + req.ByteSize() // 100, (
                f"{name}: the client sent {proxy.up} bytes for a request of {req.ByteSize()}"
            )
            assert proxy.up < arr.nbytes / 20, f"{name}: volume bytes on the wire"
        pchannel.close()
    finally:
        channel.close()
        if proxy:
            proxy.close()
        code = engine.stop()
        if code != 0:
            print(f"engine exit code {code}:\n{engine.log_text()[-2000:]}")

    # --- report ------------------------------------------------------------------------
    up = med(uploads)
    te, tw, tv, tc = med(thr_engine), med(thr_wall), med(thr_vtk), med(copies)
    ie, iw, iv = med(isl_engine), med(isl_wall), med(isl_vtk)
    print()
    print(f"threshold {LUNG}: {thr_voxels} voxels; islands: {n_islands[0]} found, {n_islands[1]} of >= {MINIMUM_SIZE}, largest {largest}")
    print("medians of", args.repeat, "runs (upload:", len(uploads), "runs); outputs equal to VTK voxel for voxel")
    print()
    rows = [
        ("upload (4 MiB chunks)", f"{up:.3f} s", f"{mib / up:.0f} MiB/s", ""),
        ("Threshold compute", f"{te * 1e3:.1f} ms", f"vtkImageThreshold {tv * 1e3:.1f} ms", f"{tv / te:.2f}x"),
        ("  vs memory copy", "", f"arr.copy() {tc * 1e3:.1f} ms", f"{te / tc:.2f}x copy time"),
        ("Threshold RPC wall", f"{tw * 1e3:.1f} ms", f"overhead {(tw - te) * 1e3:.1f} ms", f"{(tw - te) / te:.0%} of compute"),
        ("Islands compute", f"{ie * 1e3:.1f} ms", f"vtkITKIslandMath {iv * 1e3:.1f} ms", f"{iv / ie:.2f}x"),
        ("Islands RPC wall", f"{iw * 1e3:.1f} ms", f"overhead {(iw - ie) * 1e3:.1f} ms", f"{(iw - ie) / ie:.0%} of compute"),
    ]
    w = [max(len(r[c]) for r in rows) for c in range(4)]
    print(f"{'':{w[0]}}  {'segkit':>{w[1]}}  {'reference':<{w[2]}}  ratio")
    for r in rows:
        print(f"{r[0]:{w[0]}}  {r[1]:>{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")
    print()
    for name, (sent, size, received) in wire.items():
        print(f"{name} on the wire: client sent {sent} bytes for a {size}-byte request (volume {arr.nbytes} bytes); received {received}")
    print()
    ok_thr = te <= 2 * tc
    ok_isl = iv / ie >= 5
    print(f"targets: Threshold within 2x of a memory copy: {'yes' if ok_thr else 'NO'} ({te / tc:.2f}x); "
          f"Islands >= 5x faster than vtkITKIslandMath: {'yes' if ok_isl else 'NO'} ({iv / ie:.1f}x)")


if __name__ == "__main__":
    main()
