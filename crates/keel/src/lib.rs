//! # keel
//!
//! Production ML in Rust, as libraries you link: the whole lifecycle of a model, with the
//! discipline of an MLOps stack and none of its Python at serving time.
//!
//! | module | what | crate |
//! |---|---|---|
//! | [`core`] | `Frame`, `Schema`, `DataHash`, the versioned envelope, `Clock` | keel-core |
//! | `gbdt` | LightGBM / XGBoost models scored in pure Rust, TreeSHAP | keel-gbdt |
//! | `deep` | candle MLPs: deterministic training, safetensors, a packed fast path | keel-deep |
//! | `store` | RocksDB feature store: versioned views, online/as-of/point-in-time reads | keel-store |
//! | `transform` | `Spec` -> `FittedPipeline`, fitted once, shipped with the model | keel-transform |
//! | `registry` | tracked runs, versioned sha256-checked bundles, aliases, MLflow export | keel-registry |
//! | `monitor` | drift (scipy/Evidently parity), decay, policy, gate, metrics | keel-monitor |
//! | `train` | `TrainingJob`, `RetrainLoop` | keel-train |
//! | `serve` | `Deployment`: shadow, canary, gated promotion, rollback | keel-serve |
//! | `http` | `serve::http`: the V2 (KServe / Triton) HTTP server behind `keel serve` | keel-serve |
//!
//! ## The lifecycle
//! 1. **Features**: define entities, feature views and a feature service in the `store`;
//!    ingest history; a checkpoint is the training-data version.
//! 2. **Training set**: `Store::historical` joins entity rows point-in-time (no leakage).
//! 3. **Train**: a `train::TrainingJob` splits by time, fits the `transform::Spec` on the
//!    training rows only, trains, evaluates (scikit-learn-exact metrics), tracks the run and
//!    registers a bundle (model + fitted pipeline + input schema + eval scores + reference
//!    profile) in the `registry`.
//! 4. **Serve**: `serve::Deployment::from_registry` answers with the `champion`; a challenger
//!    goes `shadow` -> `canary` -> `champion` only through gates; rollback is one call.
//! 5. **Watch**: `monitor::Monitor` windows the prediction log against the reference profile;
//!    drift alone alerts, decay triggers `train::RetrainLoop` (retrain -> gate -> shadow).
//!
//! `examples/quickstart.rs` runs all of it on embedded defaults (`scripts/demo.sh`).
//!
//! ```
//! // The core is always there; everything else is a feature (all on by default).
//! let csv = "amount,country\n12.5,FR\n,DE\n";
//! let frame = keel::core::Frame::from_csv_reader(csv.as_bytes(), None)?;
//! assert_eq!(frame.nrows(), 2);
//! # Ok::<(), keel::Error>(())
//! ```
//!
//! Every crate's error converts into [`Error`] with `?`, its typed cause kept.
//!
//! ## Features
//! Default: everything. The edge build `--no-default-features --features gbdt` links no C or
//! C++ (no RocksDB, no LightGBM, no candle). `train` is the only feature that links LightGBM
//! and lets transforms fit; `serve` does not enable it.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub use keel_core as core;
#[cfg(feature = "deep")]
pub use keel_deep as deep;
#[cfg(feature = "gbdt")]
pub use keel_gbdt as gbdt;
#[cfg(feature = "model")]
pub use keel_model as model;
#[cfg(feature = "monitor")]
pub use keel_monitor as monitor;
#[cfg(feature = "registry")]
pub use keel_registry as registry;
#[cfg(feature = "serve")]
pub use keel_serve as serve;
#[cfg(feature = "store")]
pub use keel_store as store;
#[cfg(feature = "train")]
pub use keel_train as train;
#[cfg(feature = "transform")]
pub use keel_transform as transform;

mod error;
pub use error::{Error, Result};
