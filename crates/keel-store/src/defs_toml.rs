//! Definitions from TOML: strict (an unknown key is an error, never ignored) and with durations
//! people write (`ttl = "7d"`, `"36h"`, `"90s"`) beside the exact `ttl_ms` integers.

use crate::defs::{Definitions, Entity, FeatureRef, FeatureService, FeatureView};
use crate::error::{Result, StoreError};
use keel_core::Field;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefsToml {
    #[serde(default)]
    entities: Vec<EntityToml>,
    #[serde(default)]
    views: Vec<ViewToml>,
    #[serde(default)]
    services: Vec<ServiceToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityToml {
    name: String,
    join_keys: Vec<Field>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewToml {
    name: String,
    version: u32,
    entities: Vec<String>,
    features: Vec<Field>,
    ttl: Option<String>,
    ttl_ms: Option<i64>,
    retention: Option<String>,
    retention_ms: Option<i64>,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceToml {
    name: String,
    features: Vec<String>,
}

/// Parses a duration as people write it: a number and a unit (`ms`, `s`, `m`, `h`, `d`, `w`,
/// or their long forms), several parts allowed (`"1h 30m"`), into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<i64> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        StoreError::Definition(format!(
            "duration `{text:.40}`: {e} (write e.g. \"7d\", \"36h\", \"90s\", \"1h 30m\")"
        ))
    })?;
    i64::try_from(d.as_millis())
        .map_err(|_| StoreError::Definition(format!("duration `{text:.40}` is too long")))
}

fn one_duration(
    view: &str,
    what: &str,
    text: Option<String>,
    ms: Option<i64>,
) -> Result<Option<i64>> {
    match (text, ms) {
        (Some(_), Some(_)) => Err(StoreError::Definition(format!(
            "view `{view}`: give `{what}` or `{what}_ms`, not both"
        ))),
        (Some(t), None) => parse_duration_ms(&t).map(Some),
        (None, ms) => Ok(ms),
    }
}

impl Definitions {
    /// Reads definitions from TOML: `[[entities]]` (`name`, `join_keys`), `[[views]]` (`name`,
    /// `version`, `entities`, `features`, `ttl` or `ttl_ms`, `retention` or `retention_ms`,
    /// `owner`, `description`, `tags`) and `[[services]]` (`name`, `features` as
    /// `view[@version]:feature`). Durations are text with a unit (`"7d"`) or integer
    /// milliseconds under the `_ms` key. Any other key is an error naming it.
    ///
    /// ```
    /// let defs = keel_store::Definitions::from_toml(r#"
    /// [[entities]]
    /// name = "card"
    /// join_keys = [{ name = "card_id", dtype = "string", nullable = false }]
    /// [[views]]
    /// name = "card_stats"
    /// version = 1
    /// entities = ["card"]
    /// features = [{ name = "spend_24h", dtype = "f64" }]
    /// ttl = "7d"
    /// "#)?;
    /// assert_eq!(defs.views[0].ttl_ms, Some(7 * 24 * 3_600_000));
    /// # Ok::<(), keel_store::StoreError>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Definitions> {
        let d: DefsToml = toml::from_str(text)
            .map_err(|e| StoreError::Definition(format!("TOML: {}", e.to_string().trim())))?;
        let views = d
            .views
            .into_iter()
            .map(|v| {
                Ok(FeatureView {
                    ttl_ms: one_duration(&v.name, "ttl", v.ttl, v.ttl_ms)?,
                    retention_ms: one_duration(&v.name, "retention", v.retention, v.retention_ms)?,
                    name: v.name,
                    version: v.version,
                    entities: v.entities,
                    features: v.features,
                    owner: v.owner,
                    description: v.description,
                    tags: v.tags,
                })
            })
            .collect::<Result<_>>()?;
        let services = d
            .services
            .into_iter()
            .map(|s| {
                Ok(FeatureService {
                    name: s.name,
                    features: s
                        .features
                        .iter()
                        .map(|r| FeatureRef::parse(r))
                        .collect::<Result<_>>()?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Definitions {
            entities: d
                .entities
                .into_iter()
                .map(|e| Entity {
                    name: e.name,
                    join_keys: e.join_keys,
                })
                .collect(),
            views,
            services,
        })
    }
}
