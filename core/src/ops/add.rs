//! add operator (being written).
