//! depthwise_conv2d operator (being written).
