"""segkit_slicer: the Qt-free side of the Segkit Slicer extension.

- `geometry`: Slicer's RAS `vtkOrientedImageData` <-> the contract's LPS `Geometry` and
  `[k][j][i]` arrays;
- `masks`: cropping, bit packing and run lengths of masks (numpy only);
- `client`: the gRPC client (token, gzip, limits, health, uploads cached per node);
- `schema`: parameter widgets described from the engine's effect schema;
- `logic`: `EngineLogic`, which runs engine effects through Slicer's own
  `ModifySegmentByLabelmap` (masking, overwrite, undo) and exports segmentations;
- `process`: starting and stopping a local `segkit serve`;
- `background`: a worker-thread call that the Qt side polls with a timer;
- `dependencies`: installing grpcio inside Slicer, on demand.

Submodules are imported on demand: importing this package needs nothing beyond the
standard library, so Slicer can load the extension before grpcio is installed.
"""

__version__ = "0.1.0"
