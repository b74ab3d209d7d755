//! softmax operator (being written).
