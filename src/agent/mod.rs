//! The tool loop every role runs on (being written).
