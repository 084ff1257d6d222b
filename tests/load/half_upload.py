"""A client that goes away in the middle of an upload (run as a separate process).

`python half_upload.py ADDRESS STUBS_DIR NI NJ NK FRACTION` declares an int16 volume of
NI x NJ x NK voxels, sends FRACTION of its bytes in 4 MiB chunks, prints `sent BYTES`
and then waits for ever inside the request stream: the test kills this process, so the
engine sees the connection drop with the upload half done.
"""

import sys
import time

import numpy as np

import loadkit as lk

CHUNK_BYTES = 4 << 20


def main() -> None:
    address, stubs_dir = sys.argv[1], sys.argv[2]
    ni, nj, nk = (int(x) for x in sys.argv[3:6])
    fraction = float(sys.argv[6])
    pbs = lk._import_stubs(stubs_dir)
    pb = pbs.pb
    lattice = lk.cl.Lattice(size=(ni, nj, nk))
    total = ni * nj * nk * 2
    header = pb.VolumeHeader(geometry=lattice.to_pb(pb), scalar_type=pb.SCALAR_TYPE_INT16,
                             total_bytes=total, name="abandoned upload")
    chunk = np.random.default_rng(0).integers(-1000, 1000, CHUNK_BYTES // 2, dtype=np.int16).tobytes()
    stop_at = int(total * fraction) // CHUNK_BYTES * CHUNK_BYTES

    def messages():
        yield pb.UploadVolumeRequest(header=header)
        for offset in range(0, stop_at, CHUNK_BYTES):
            yield pb.UploadVolumeRequest(data=chunk, offset=offset)
        print(f"sent {stop_at}", flush=True)
        while True:
            time.sleep(3600)

    stub = pbs.grpc.EngineStub(lk.cl.open_channel(address))
    stub.UploadVolume(messages())


if __name__ == "__main__":
    main()
