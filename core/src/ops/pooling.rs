//! pooling operator (being written).
