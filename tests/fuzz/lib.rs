//! The fuzz targets and their seeds, shared with the normal test suite.
pub mod seeds;
pub mod targets;
