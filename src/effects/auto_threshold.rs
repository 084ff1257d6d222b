//! Automatic threshold selection (placeholder: being written).
