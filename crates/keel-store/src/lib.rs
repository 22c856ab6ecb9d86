//! # keel-store
//!
//! An embedded feature store on RocksDB with Feast's semantics and history:
//! entities, versioned feature views and feature services kept in the database's own registry;
//! atomic, idempotent writes that land at their event time; online reads with TTL and status;
//! as-of reads at any past time; point-in-time joins for training sets (with an option that
//! ignores rows created after the entity timestamp); checkpoints as data versions; SST bulk loads;
//! retention by compaction; deletion of an entity across views.
//!
//! ```
//! use keel_core::{DType, Field};
//! use keel_store::{Definitions, Entity, FeatureRef, FeatureService, FeatureView, Row, Status, Store, Value};
//!
//! # fn main() -> Result<(), keel_store::StoreError> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! store.apply(&Definitions {
//!     entities: vec![Entity { name: "card".into(), join_keys: vec![Field::required("card_id", DType::String)] }],
//!     views: vec![FeatureView {
//!         name: "card_stats".into(), version: 1, entities: vec!["card".into()],
//!         features: vec![Field::new("spend_24h", DType::F64)],
//!         ttl_ms: Some(86_400_000), retention_ms: None,
//!         owner: "risk".into(), description: String::new(), tags: Default::default(),
//!     }],
//!     services: vec![FeatureService {
//!         name: "fraud".into(),
//!         features: vec![FeatureRef::parse("card_stats@1:spend_24h")?],
//!     }],
//! })?;
//! store.write("card_stats", 1, &[Row { key: vec!["c1".into()], event_ms: 1_000, created_ms: Some(1_000), values: vec![42.5.into()] }])?;
//! let r = store.get_as_of("fraud", &[vec!["c1".into()], vec!["c2".into()]], 2_000)?;
//! assert_eq!(r.values[0][0].value, Value::F64(42.5));
//! assert_eq!(r.values[1][0].status, Status::NotFound);
//! # Ok(())
//! # }
//! ```
//!
//! The key layout is documented byte by byte in `docs/store.md`.
//!
//! ## Crate features
//! - `redis`: the shared online store on Redis / Valkey / Redis Cluster
//!   ([`Store::connect`], [`redis::RedisBackend`]), for services that run as several replicas.
//!
//! RocksDB (C++) is always linked: this crate is not part of the edge build.
#![deny(missing_docs)]

mod backend;
mod cache;
mod defs;
mod defs_toml;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod key;
mod store;
mod value;

#[cfg(feature = "redis")]
pub use backend::redis;
pub use backend::{
    Backend, Batch, Found, Invalidation, InvalidationSink, Lookup, ManyFound, MessageSink,
    NewestLayout, NewestRead, RecoveryReport, RocksBackend, RocksOptions, RowRef,
};
pub use defs::{Definitions, Entity, FeatureRef, FeatureService, FeatureView, MAX_NAME};
pub use defs_toml::parse_duration_ms;
pub use error::{Result, StoreError};
pub use key::{MAX_KEY, MAX_TS};
pub use store::{
    AsOfOptions, CheckpointId, Durability, FeatureValue, HistoricalOptions, MaterializeOptions,
    MaterializeReport, OnlineResponse, Row, Status, Store, StoreOptions, ViewStats, MAX_VALUE,
};
pub use value::Value;
