//! Artifacts: weights in safetensors (PyTorch-compatible names), config and metadata in the
//! core envelope. Loading checks every tensor's presence, dtype and shape.

use std::collections::BTreeMap;

use keel_core::{envelope, Kind, Persisted};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::config::MlpConfig;
use crate::model::Mlp;
use crate::{DeepError, Result};

/// Largest safetensors file accepted (4 GiB).
pub const MAX_WEIGHTS: usize = 4 << 30;

/// The envelope part of an artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The model config, as JSON (its enums are internally tagged).
    pub config_json: String,
    /// Free metadata (training run, data version, metrics...).
    pub metadata: BTreeMap<String, String>,
    /// Tensor names in the weights file, in order.
    pub tensors: Vec<String>,
}

impl Persisted for Manifest {
    const KIND: Kind = Kind(*b"DEEP");
    const FORMAT_VERSION: u16 = 1;
}

impl Mlp {
    /// The safetensors bytes of every parameter (names as [`Mlp::named_parameters`]).
    pub fn weights_safetensors(&self) -> Result<Vec<u8>> {
        safetensors_bytes(&self.named_parameters())
    }

    /// Saves as `(manifest envelope, safetensors weights)`.
    pub fn to_parts(&self, metadata: BTreeMap<String, String>) -> Result<(Vec<u8>, Vec<u8>)> {
        let m = Manifest {
            config_json: serde_json::to_string(&self.cfg)?,
            metadata,
            tensors: self
                .named_parameters()
                .into_iter()
                .map(|(n, _)| n)
                .collect(),
        };
        Ok((envelope::encode(&m)?, self.weights_safetensors()?))
    }

    /// Loads from `(manifest envelope, safetensors weights)`; returns the model and metadata.
    pub fn from_parts(manifest: &[u8], weights: &[u8]) -> Result<(Mlp, BTreeMap<String, String>)> {
        let m: Manifest = envelope::decode(manifest)?;
        let cfg: MlpConfig = serde_json::from_str(&m.config_json)?;
        let model = Mlp::from_safetensors(cfg, weights)?;
        Ok((model, m.metadata))
    }

    /// Builds a model of `cfg` from safetensors bytes (keel's own or exported from PyTorch with
    /// `safetensors.torch.save_file(model.state_dict())` for the reference module). Missing
    /// tensors, other dtypes (f32 only) and wrong shapes are typed errors naming the tensor.
    pub fn from_safetensors(cfg: MlpConfig, weights: &[u8]) -> Result<Mlp> {
        if weights.len() > MAX_WEIGHTS {
            return Err(DeepError::Weights("weights file too large".into()));
        }
        // Shapes come from a freshly built model of this config; values from the file.
        let mut model = Mlp::new(cfg, 0)?;
        load_safetensors(weights, &model.named_parameters())?;
        model.repack()?;
        Ok(model)
    }
}

/// Serialises named f32 parameters as safetensors.
pub(crate) fn safetensors_bytes(params: &[(String, &candle_core::Var)]) -> Result<Vec<u8>> {
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(params.len());
    for (name, v) in params {
        let t = v.as_tensor();
        let data: Vec<f32> = t.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        bufs.push((name.clone(), t.dims().to_vec(), bytes));
    }
    let views = bufs
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(DeepError::Safetensors)
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(DeepError::Safetensors)
}

/// Sets every named parameter from untrusted safetensors bytes: each tensor must be present,
/// f32, of the parameter's shape and finite (typed errors naming the tensor).
pub(crate) fn load_safetensors(
    weights: &[u8],
    params: &[(String, &candle_core::Var)],
) -> Result<()> {
    if weights.len() > MAX_WEIGHTS {
        return Err(DeepError::Weights("weights file too large".into()));
    }
    let st = SafeTensors::deserialize(weights)?;
    for (name, v) in params {
        let t = st
            .tensor(name)
            .map_err(|_| DeepError::MissingTensor(name.clone()))?;
        if t.dtype() != Dtype::F32 {
            return Err(DeepError::WrongDtype {
                name: name.clone(),
                found: format!("{:?}", t.dtype()),
            });
        }
        if t.shape() != v.as_tensor().dims() {
            return Err(DeepError::WrongShape {
                name: name.clone(),
                expected: v.as_tensor().dims().to_vec(),
                found: t.shape().to_vec(),
            });
        }
        let data: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if data.iter().any(|x| !x.is_finite()) {
            return Err(DeepError::Weights(format!(
                "tensor {name} holds NaN or infinity"
            )));
        }
        v.set(&candle_core::Tensor::from_vec(
            data,
            v.as_tensor().dims(),
            crate::device(),
        )?)?;
    }
    Ok(())
}
