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

/// What a CNN or sequence-model artifact's manifest holds: its config as JSON and free
/// metadata (the MLP's manifest also lists tensor names and keeps its own layout).
pub(crate) trait ConfigManifest: Persisted {
    fn new(config_json: String, metadata: BTreeMap<String, String>) -> Self;
    fn into_parts(self) -> (String, BTreeMap<String, String>);
}

/// A model saved as `(manifest envelope, safetensors weights)` with shapes that follow from its
/// config: the CNN and the sequence encoder. [`save_parts`] and [`load_parts`] are their
/// `to_parts` / `from_parts`.
pub(crate) trait ConfigArtifact: Sized {
    type Config: Serialize + serde::de::DeserializeOwned;
    type Manifest: ConfigManifest;
    fn config(&self) -> &Self::Config;
    /// A model of `cfg` with initial weights (their shapes are what loading checks against).
    fn fresh(cfg: Self::Config) -> Result<Self>;
    fn params(&self) -> Vec<(String, &candle_core::Var)>;
}

/// `(manifest envelope, safetensors weights)` of a model.
pub(crate) fn save_parts<A: ConfigArtifact>(
    model: &A,
    metadata: BTreeMap<String, String>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let weights = safetensors_bytes(&model.params())?;
    let m = A::Manifest::new(serde_json::to_string(model.config())?, metadata);
    Ok((envelope::encode(&m)?, weights))
}

/// The model and metadata of `(manifest envelope, safetensors weights)`: every tensor must be
/// present, f32, of the config's shape and finite.
pub(crate) fn load_parts<A: ConfigArtifact>(
    manifest: &[u8],
    weights: &[u8],
) -> Result<(A, BTreeMap<String, String>)> {
    let (config_json, metadata) = envelope::decode::<A::Manifest>(manifest)?.into_parts();
    let cfg: A::Config = serde_json::from_str(&config_json)?;
    Ok((load_weights(cfg, weights)?, metadata))
}

/// A model of `cfg` with the weights of a safetensors file.
pub(crate) fn load_weights<A: ConfigArtifact>(cfg: A::Config, weights: &[u8]) -> Result<A> {
    let model = A::fresh(cfg)?;
    load_safetensors(weights, &model.params())?;
    Ok(model)
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

/// The manifest type, its envelope kind and the `to_parts` / `from_parts` /
/// `from_safetensors` of a model whose tensor shapes follow from its config (the CNN and the
/// sequence encoder): one definition instead of a copy per architecture.
macro_rules! config_artifact {
    ($model:ident, $config:ident, $manifest:ident, $kind:literal, $what:literal) => {
        #[doc = concat!("The envelope part of a ", $what, " artifact: its config as JSON and free metadata.")]
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct $manifest {
            /// The model config, as JSON.
            pub config_json: String,
            /// Free metadata (training run, data version, metrics...).
            pub metadata: std::collections::BTreeMap<String, String>,
        }

        impl keel_core::Persisted for $manifest {
            const KIND: keel_core::Kind = keel_core::Kind(*$kind);
            const FORMAT_VERSION: u16 = 1;
        }

        impl $crate::artifact::ConfigManifest for $manifest {
            fn new(
                config_json: String,
                metadata: std::collections::BTreeMap<String, String>,
            ) -> Self {
                $manifest {
                    config_json,
                    metadata,
                }
            }
            fn into_parts(self) -> (String, std::collections::BTreeMap<String, String>) {
                (self.config_json, self.metadata)
            }
        }

        impl $crate::artifact::ConfigArtifact for $model {
            type Config = $config;
            type Manifest = $manifest;
            fn config(&self) -> &$config {
                &self.cfg
            }
            fn fresh(cfg: $config) -> $crate::Result<$model> {
                $model::new(cfg, 0)
            }
            fn params(&self) -> Vec<(String, &candle_core::Var)> {
                self.named_parameters()
            }
        }

        impl $model {
            /// Saves as `(manifest envelope, safetensors weights)`.
            pub fn to_parts(
                &self,
                metadata: std::collections::BTreeMap<String, String>,
            ) -> $crate::Result<(Vec<u8>, Vec<u8>)> {
                $crate::artifact::save_parts(self, metadata)
            }

            /// Loads from `(manifest envelope, safetensors weights)`: every tensor must be
            /// present, f32, of the config's shape and finite; returns the model and its
            /// metadata.
            pub fn from_parts(
                manifest: &[u8],
                weights: &[u8],
            ) -> $crate::Result<($model, std::collections::BTreeMap<String, String>)> {
                $crate::artifact::load_parts(manifest, weights)
            }

            #[doc = concat!(
                "Builds a model of `cfg` from safetensors bytes: keel's own, or ",
                "`safetensors.torch.save_file(model.state_dict())` of the reference PyTorch module ",
                "(`crates/keel-deep/tests/fixtures/torch_reference.py`; tensor names as [`",
                stringify!($model),
                "::named_parameters`]). Missing tensors, other dtypes (f32 only), wrong shapes and ",
                "non-finite values are typed errors naming the tensor."
            )]
            pub fn from_safetensors(cfg: $config, weights: &[u8]) -> $crate::Result<$model> {
                $crate::artifact::load_weights(cfg, weights)
            }
        }
    };
}
pub(crate) use config_artifact;
