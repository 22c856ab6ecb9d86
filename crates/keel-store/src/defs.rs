//! Definitions: entities, feature views, feature services.

use crate::error::{Result, StoreError};
use keel_core::envelope::{Kind, Persisted};
use keel_core::{DType, Field};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest name accepted for entities, views, features and services.
pub const MAX_NAME: usize = 128;

/// A business object features describe (card, merchant...), identified by typed join keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    /// Unique name.
    pub name: String,
    /// Join keys, in order; each `i64` or `string`, never nullable.
    pub join_keys: Vec<Field>,
}

/// A versioned group of features of one or more entities, written together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureView {
    /// Name.
    pub name: String,
    /// Version; a different feature list needs a new version.
    pub version: u32,
    /// Entities whose join keys (concatenated in this order) identify a row.
    pub entities: Vec<String>,
    /// Features, in order.
    pub features: Vec<Field>,
    /// A value older than this (event time to read time) reads as expired. `None`: never.
    pub ttl_ms: Option<i64>,
    /// History older than this is dropped by compaction. `None`: kept forever.
    pub retention_ms: Option<i64>,
    /// Owner, for people.
    #[serde(default)]
    pub owner: String,
    /// Description, for people.
    #[serde(default)]
    pub description: String,
    /// Free-form tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// `view:feature` pinned to a view version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeatureRef {
    /// View name.
    pub view: String,
    /// View version.
    pub version: u32,
    /// Feature name.
    pub feature: String,
}

impl FeatureRef {
    /// Parses `view:feature` or `view@version:feature` (version 1 when omitted).
    pub fn parse(s: &str) -> Result<FeatureRef> {
        let bad = || {
            StoreError::Definition(format!(
                "feature ref `{s}`: expected view[@version]:feature"
            ))
        };
        let (view, feature) = s.split_once(':').ok_or_else(bad)?;
        let (view, version) = match view.split_once('@') {
            Some((v, ver)) => (v, ver.trim_start_matches('v').parse().map_err(|_| bad())?),
            None => (view, 1),
        };
        if view.is_empty() || feature.is_empty() {
            return Err(bad());
        }
        Ok(FeatureRef {
            view: view.into(),
            version,
            feature: feature.into(),
        })
    }
}

impl std::fmt::Display for FeatureRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.view, self.version, self.feature)
    }
}

/// A named set of features a model consumes, pinned to view versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureService {
    /// Name.
    pub name: String,
    /// Features, in the order the model reads them.
    pub features: Vec<FeatureRef>,
}

/// A set of definitions applied together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    /// Entities.
    #[serde(default)]
    pub entities: Vec<Entity>,
    /// Feature views.
    #[serde(default)]
    pub views: Vec<FeatureView>,
    /// Feature services.
    #[serde(default)]
    pub services: Vec<FeatureService>,
}

impl Persisted for Entity {
    const KIND: Kind = Kind(*b"SENT");
    const FORMAT_VERSION: u16 = 1;
}
impl Persisted for FeatureView {
    const KIND: Kind = Kind(*b"SVIW");
    const FORMAT_VERSION: u16 = 1;
}
impl Persisted for FeatureService {
    const KIND: Kind = Kind(*b"SSVC");
    const FORMAT_VERSION: u16 = 1;
}

pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Definition(format!(
            "{what} name `{name:.40}` must be 1..={MAX_NAME} characters of [A-Za-z0-9_.-]"
        )))
    }
}

impl Entity {
    pub(crate) fn validate(&self) -> Result<()> {
        check_name("entity", &self.name)?;
        if self.join_keys.is_empty() {
            return Err(StoreError::Definition(format!(
                "entity `{}` has no join key",
                self.name
            )));
        }
        for k in &self.join_keys {
            check_name("join key", &k.name)?;
            if !matches!(k.dtype, DType::I64 | DType::String) {
                return Err(StoreError::Definition(format!(
                    "entity `{}`: join key `{}` is {}; join keys are i64 or string",
                    self.name, k.name, k.dtype
                )));
            }
        }
        Ok(())
    }
}

impl FeatureView {
    /// The column family holding this view version.
    pub(crate) fn cf_name(&self) -> String {
        cf_name(&self.name, self.version)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        check_name("feature view", &self.name)?;
        if self.entities.is_empty() {
            return Err(StoreError::Definition(format!(
                "view `{}` names no entity",
                self.name
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.features {
            check_name("feature", &f.name)?;
            if !seen.insert(f.name.as_str()) {
                return Err(StoreError::Definition(format!(
                    "view `{}`: duplicate feature `{}`",
                    self.name, f.name
                )));
            }
        }
        if self.features.is_empty() {
            return Err(StoreError::Definition(format!(
                "view `{}` has no feature",
                self.name
            )));
        }
        for (what, v) in [("ttl_ms", self.ttl_ms), ("retention_ms", self.retention_ms)] {
            if v.is_some_and(|v| v <= 0) {
                return Err(StoreError::Definition(format!(
                    "view `{}`: {what} must be positive",
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// Position of a feature.
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| f.name == name)
    }
}

pub(crate) fn cf_name(view: &str, version: u32) -> String {
    format!("fv:{view}:v{version}")
}
