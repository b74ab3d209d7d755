//! fully_connected operator (being written).
