//! quantize operator (being written).
