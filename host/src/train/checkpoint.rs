//! Checkpoints: the whole network (spec, parameters, batch norm statistics; no optimizer
//! state) in a small binary file, restored bit for bit.
//!
//! Layout, little-endian:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | [`CHECKPOINT_MAGIC`] |
//! | 4 | header length `h` (u32) |
//! | `h` | header, JSON: `{"version": 1, "spec": "<the model file, TOML>", "tensors": [{"path": [..], "name": "..", "len": n}, ..]}` |
//! | 4 * sum(len) | every tensor's values as raw f32 bits, in the header's order |
//!
//! Values are stored as their bit patterns, so loading gives exactly the saved network.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::network::Network;
use super::spec::ModelSpec;

/// The first eight bytes of a checkpoint file. The rest: a little-endian u32 header length,
/// a JSON header (`version`, the model file as TOML in `spec`, and the `path`, `name` and `len`
/// of each tensor), then every tensor's values as raw little-endian f32 bits in that order.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"MOTETRN1";

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    spec: String,
    tensors: Vec<TensorEntry>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct TensorEntry {
    path: Vec<usize>,
    name: String,
    len: usize,
}

impl Network {
    /// The network as checkpoint bytes (see the module documentation for the format).
    pub fn to_checkpoint(&self) -> Result<Vec<u8>> {
        let params = self.parameters();
        let header = Header {
            version: 1,
            spec: self.spec.to_toml()?,
            tensors: params
                .iter()
                .map(|p| TensorEntry {
                    path: p.path.clone(),
                    name: p.name.clone(),
                    len: p.values.len(),
                })
                .collect(),
        };
        let header = serde_json::to_vec(&header)?;
        let values: usize = params.iter().map(|p| p.values.len()).sum();
        let mut out = Vec::with_capacity(12 + header.len() + 4 * values);
        out.extend_from_slice(&CHECKPOINT_MAGIC);
        out.extend_from_slice(&u32::try_from(header.len())?.to_le_bytes());
        out.extend_from_slice(&header);
        for p in &params {
            for v in p.values {
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        Ok(out)
    }

    /// A network from checkpoint bytes.
    pub fn from_checkpoint(bytes: &[u8]) -> Result<Network> {
        ensure!(
            bytes.len() >= 12 && bytes[..8] == CHECKPOINT_MAGIC,
            "not a mote training checkpoint (it does not start with {:?})",
            std::str::from_utf8(&CHECKPOINT_MAGIC).unwrap_or("")
        );
        let len = u32::from_le_bytes(bytes[8..12].try_into()?) as usize;
        let header = bytes
            .get(12..12 + len)
            .context("checkpoint truncated in its header")?;
        let header: Header = serde_json::from_slice(header).context("checkpoint header")?;
        ensure!(
            header.version == 1,
            "checkpoint version {} (this build reads version 1)",
            header.version
        );
        let spec = ModelSpec::parse(&header.spec).context("the checkpoint's model spec")?;
        let mut net = Network::with_init(&spec, spec.training.init, spec.training.seed)?;
        let expected: Vec<TensorEntry> = net
            .parameters()
            .iter()
            .map(|p| TensorEntry {
                path: p.path.clone(),
                name: p.name.clone(),
                len: p.values.len(),
            })
            .collect();
        ensure!(
            expected == header.tensors,
            "the checkpoint's tensors do not match its model spec"
        );
        let mut data = &bytes[12 + len..];
        let total: usize = expected.iter().map(|t| t.len).sum();
        if data.len() != 4 * total {
            bail!(
                "checkpoint holds {} bytes of values, its header describes {}",
                data.len(),
                4 * total
            );
        }
        net.visit_params(&mut |p| {
            let (head, rest) = data.split_at(4 * p.value.len());
            for (v, b) in p.value.iter_mut().zip(head.chunks_exact(4)) {
                *v = f32::from_bits(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            }
            data = rest;
        });
        Ok(net)
    }

    /// Writes a checkpoint file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_checkpoint()?)
            .with_context(|| format!("writing the checkpoint {}", path.display()))
    }

    /// Reads a checkpoint file.
    pub fn load(path: impl AsRef<Path>) -> Result<Network> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the checkpoint {}", path.display()))?;
        Self::from_checkpoint(&bytes).with_context(|| format!("in {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_type_round_trips_and_damage_is_refused() {
        let text = r#"
            name = "all"
            input = [8, 8, 2]
            classes = 4
            layers = [
                { type = "conv2d", filters = 4, kernel = [3, 2], stride = 1, padding = "same", dilation = 1, activation = "relu6" },
                { type = "depthwise_conv2d", kernel = 3, depth_multiplier = 2, use_bias = false },
                { type = "separable_conv2d", filters = 4, kernel = 3, padding = "same", activation = "relu" },
                { type = "batch_norm", momentum = 0.9, epsilon = 0.01 },
                { type = "relu" }, { type = "relu6" },
                { type = "max_pool", size = 2, stride = 1 },
                { type = "residual", activation = "relu", layers = [ { type = "conv2d", filters = 4, kernel = 1 } ] },
                { type = "residual", layers = [ { type = "conv2d", filters = 6, kernel = 3, stride = 2, padding = "same" } ] },
                { type = "avg_pool", size = 2, padding = "same" },
                { type = "dropout", rate = 0.25 },
                { type = "global_avg_pool" },
                { type = "flatten" },
                { type = "dense", units = 4, use_bias = false },
                { type = "softmax" },
            ]
            [training]
            epochs = 3
            optimizer = { type = "sgd", learning_rate = 0.1, momentum = 0.8, weight_decay = 0.0001 }
            schedule = { type = "step", every = 2, factor = 0.3 }
            init = "xavier"
            early_stopping = { patience = 2, metric = "loss", min_delta = 0.001 }
            class_weights = [1.0, 2.0, 1.0, 0.5]
            augment = { shift = [1, 2], flip_horizontal = true, scale = 0.1, noise = 0.01 }
            seed = 42
        "#;
        let spec = ModelSpec::parse(text).unwrap();
        assert_eq!(ModelSpec::parse(&spec.to_toml().unwrap()).unwrap(), spec);
        let net = Network::new(&spec).unwrap();
        let bytes = net.to_checkpoint().unwrap();
        let back = Network::from_checkpoint(&bytes).unwrap();
        assert_eq!(back.to_checkpoint().unwrap(), bytes);
        assert_eq!(back.spec(), &spec);

        assert!(Network::from_checkpoint(&bytes[..bytes.len() - 1]).is_err());
        assert!(Network::from_checkpoint(b"MOTETRN0....").is_err());
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 4]);
        assert!(Network::from_checkpoint(&longer).is_err());
    }
}
