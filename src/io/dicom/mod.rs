//! DICOM (placeholder: series discovery and decoding are being written).
