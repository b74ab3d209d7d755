//! conv2d operator (being written).
