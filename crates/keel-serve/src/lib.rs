//! # keel-serve
//!
//! The in-process serving runtime. A [`Deployment`] serves one registered model:
//!
//! - the **champion** answers; a request's features come from the feature service in the store
//!   (entity lookup, freshness reported) plus request-time values, through the version's frozen
//!   `FittedPipeline`, into a [`Predictor`] (GBDT or deep);
//! - a challenger in **shadow** receives a mirror of the traffic on a worker thread through a
//!   bounded queue (overload drops and counts shadow work, never slowing the champion);
//!   agreement, score differences and latency are recorded;
//! - on **canary**, an FNV hash of the routing key sends `k`% of keys (sticky) to it;
//! - promotion shadow -> canary -> champion only through [`ShadowGate`] / [`CanaryGate`], or
//!   with an override whose reason lands in the registry's audit log;
//! - [`Deployment::rollback`] swaps state atomically (in-flight requests finish on the model
//!   they started with); all state is the registry's aliases (`champion`, `shadow`, `canary`),
//!   so a restarted service comes back as it was;
//! - every response carries model version and route; a bounded, sampled prediction log feeds
//!   `keel_monitor::Monitor`; HDR latency histograms per version and route, counters and
//!   Prometheus text exposition.
//!
//! - [`Deployment::precompute`] scores every entity in a multi-threaded batch job into a
//!   versioned feature view (model version recorded), so relaxed-latency callers do a single
//!   lookup ([`lookup_precomputed`]); [`load::open_loop`] measures either path at a fixed
//!   arrival rate (p50/p99/p999 from scheduled start times).
//!
//! With the `http` feature, [`http`] serves deployments over the Open Inference Protocol (V2):
//! health, metadata, inference (JSON and Triton's binary tensors), Prometheus metrics and
//! token-protected admin calls (shadow, promote, rollback). `keel serve` runs it.
//!
//! Serving links no training code: this crate depends on keel-transform without `fit` and on
//! keel-gbdt without `train`.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod deployment;
mod error;
#[cfg(feature = "http")]
pub mod http;
pub mod load;
mod metrics;
mod precompute;

pub use deployment::{
    CanaryGate, Deployment, DeploymentConfig, DeploymentConfigs, Evidence, FleetEvidence,
    FollowStatus, Follower, LabelEvidence, MissingFeature, OnMissing, Request, RequestId, Response,
    Route, ShadowGate, ShadowStats, Stage, CANARY, CHAMPION, SHADOW,
};
pub use error::{Result, ServeError};
pub use keel_model::{DeepPredictor, GbdtPredictor, ModelError, Predictor, ServedModel};
pub use precompute::{lookup_precomputed, precomputed_names, PrecomputeReport, Precomputed};

#[cfg(test)]
mod tests {
    #[test]
    fn batch_row_ids_read_as_their_text_without_being_built() {
        use super::RequestId;
        let id = RequestId::row(std::sync::Arc::from("order-7"), 12);
        assert_eq!(id.to_string(), "order-7-12");
        assert_eq!(id, "order-7-12");
        assert!(id != "order-7-012" && id != "order-7-+12" && id != "order-7");
        assert_eq!(id.fnv1a(), keel_core::fnv1a(b"order-7-12"));
        let plain = RequestId::from("abc");
        assert_eq!(plain.fnv1a(), keel_core::fnv1a(b"abc"));
        assert!(RequestId::default().is_empty());
    }

    #[test]
    fn deployment_is_send_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<super::Deployment>();
    }
}
