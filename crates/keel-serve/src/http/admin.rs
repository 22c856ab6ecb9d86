//! `/admin`: deployment state, shadow, gated promotion, override, rollback.
//!
//! Every call passes [`authorize`] first: admin enabled (a token configured), the bearer token,
//! no `Origin` header, an allowed `Host`, and for POST a JSON content type. Gates are the
//! deployment's configuration; a request cannot carry thresholds.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{json, Map, Value as Json};

use super::{read_body, served, AppState, HttpError, HttpResult};
use crate::deployment::{Deployment, LabelEvidence, Stage};
use crate::{Result, ServeError};

/// Largest admin request body, bytes.
const MAX_ADMIN_BODY: usize = 64 << 10;

/// Writes a fresh random admin token (32 bytes from the OS, hex) to `path`, readable by its
/// owner only (mode 0600, created anew: an existing file is replaced), and returns it.
pub fn generate_admin_token(path: &Path) -> Result<String> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| ServeError::Config(format!("no OS randomness for the admin token: {e}")))?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(token)
}

fn forbidden(msg: impl Into<String>) -> HttpError {
    HttpError(StatusCode::FORBIDDEN, msg.into())
}

/// The checks every admin call passes, in this order: admin enabled, no `Origin`, allowed
/// `Host`, bearer token; for POST also `Content-Type: application/json`.
fn authorize(s: &AppState, headers: &HeaderMap, post: bool) -> HttpResult<()> {
    let Some(token) = &s.admin.token else {
        return Err(forbidden(
            "admin is disabled: start the server with an admin token",
        ));
    };
    if headers.contains_key(header::ORIGIN) {
        return Err(forbidden(
            "admin calls with an Origin header are refused (browsers are not admin clients)",
        ));
    }
    if !s.admin.hosts.is_empty() {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let name = host_name(host);
        if !s.admin.hosts.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return Err(forbidden(format!(
                "admin calls must address one of the allowed hosts ({}), not `{:.64}`",
                s.admin.hosts.join(", "),
                host
            )));
        }
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare without an early exit on the first differing byte.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(HttpError(
            StatusCode::UNAUTHORIZED,
            "admin calls need `Authorization: Bearer <token>`".into(),
        ));
    }
    if post {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(HttpError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "admin calls take `Content-Type: application/json`".into(),
            ));
        }
    }
    Ok(())
}

/// The host of a `Host` header value: `name:port` -> `name`, `[v6]:port` -> `[v6]`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(n, _)| n)
}

/// Authorizes, finds the model and reads the JSON object body of an admin POST.
async fn admin_post<'a>(
    s: &'a AppState,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> HttpResult<(&'a Deployment, Map<String, Json>)> {
    authorize(s, headers, true)?;
    let d = &served(s, name)?.deployment;
    let bytes = read_body(s, headers, body, MAX_ADMIN_BODY).await?;
    let map = match serde_json::from_slice(&bytes) {
        Ok(Json::Object(m)) => m,
        _ => return Err(HttpError::bad("admin body must be a JSON object")),
    };
    Ok((d, map))
}

/// Refuses fields a call does not take (a request cannot carry gate thresholds).
fn only(body: &Map<String, Json>, allowed: &[&str]) -> HttpResult<()> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) if k == "gate" || k == "override_reason" => Err(HttpError::bad(
            "gates are the deployment's configuration, not request fields; to promote past a \
             failed gate, POST /admin/models/{name}/override with a reason",
        )),
        Some(k) => Err(HttpError::bad(format!(
            "unknown field `{k:.64}` (this call takes: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn state_json(d: &Deployment) -> Json {
    let (champion, challenger) = d.versions();
    let challenger = challenger.map(|(v, st)| match st {
        Stage::Shadow => json!({ "version": v, "stage": "shadow" }),
        Stage::Canary { percent } => json!({ "version": v, "stage": "canary", "percent": percent }),
    });
    let cfg = d.config();
    json!({
        "model": d.name(),
        "champion": champion,
        "challenger": challenger,
        "shadow": d.shadow_stats(),
        // What the gates would judge now: every replica's published evidence merged.
        "fleet": d.fleet_evidence().ok(),
        "replica": d.replica(),
        "gates": { "shadow": cfg.shadow_gate, "canary": cfg.canary_gate },
    })
}

/// `GET /admin/models/{name}`.
pub(super) async fn state(
    State(s): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> HttpResult<axum::Json<Json>> {
    authorize(&s, &headers, false)?;
    Ok(axum::Json(state_json(&served(&s, &name)?.deployment)))
}

fn reason(body: &Map<String, Json>) -> HttpResult<String> {
    body.get("reason")
        .and_then(Json::as_str)
        .filter(|r| !r.trim().is_empty())
        .map(|r| r.chars().take(1024).collect())
        .ok_or_else(|| HttpError::bad("`reason` (why) is required"))
}

fn labels(body: &Map<String, Json>) -> HttpResult<Option<LabelEvidence>> {
    match body.get("labels") {
        None | Some(Json::Null) => Ok(None),
        Some(l) => Ok(Some(serde_json::from_value(l.clone()).map_err(|_| {
            HttpError::bad("`labels` must be {\"champion\": f64, \"challenger\": f64}")
        })?)),
    }
}

/// `POST /admin/models/{name}/shadow` `{"version": 3, "reason": "..."}`.
pub(super) async fn shadow(
    State(s): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<axum::Json<Json>> {
    let (d, b) = admin_post(&s, &name, &headers, body).await?;
    only(&b, &["version", "reason"])?;
    let version = b
        .get("version")
        .and_then(Json::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| HttpError::bad("`version` is required"))?;
    d.start_shadow(version, &reason(&b)?)?;
    Ok(axum::Json(state_json(d)))
}

/// `POST /admin/models/{name}/promote` `{"to": "canary"|"champion", "labels": {...}}`:
/// through the configured gate only.
pub(super) async fn promote(
    State(s): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<axum::Json<Json>> {
    move_challenger(&s, &name, &headers, body, false).await
}

/// `POST /admin/models/{name}/override` `{"to": ..., "reason": "...", "labels": {...}}`:
/// promotes past a failed gate, recorded as OVERRIDE with the reason and the failed checks.
pub(super) async fn override_gate(
    State(s): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<axum::Json<Json>> {
    move_challenger(&s, &name, &headers, body, true).await
}

/// Moves the challenger one stage on (shadow -> canary -> champion): through the gate, or,
/// `overriding`, past it with the body's reason.
async fn move_challenger(
    s: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: Body,
    overriding: bool,
) -> HttpResult<axum::Json<Json>> {
    let (d, b) = admin_post(s, name, headers, body).await?;
    let why = if overriding {
        only(&b, &["to", "reason", "labels"])?;
        Some(reason(&b)?)
    } else {
        only(&b, &["to", "labels"])?;
        None
    };
    match (b.get("to").and_then(Json::as_str), why) {
        (Some("canary"), None) => d.promote_to_canary()?,
        (Some("canary"), Some(why)) => d.override_to_canary(&why)?,
        (Some("champion"), None) => d.promote_to_champion(labels(&b)?)?,
        (Some("champion"), Some(why)) => d.override_to_champion(&why, labels(&b)?)?,
        _ => return Err(HttpError::bad("`to` must be \"canary\" or \"champion\"")),
    }
    Ok(axum::Json(state_json(d)))
}

/// `POST /admin/models/{name}/rollback` `{"reason": "..."}`.
pub(super) async fn rollback(
    State(s): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult<axum::Json<Json>> {
    let (d, b) = admin_post(&s, &name, &headers, body).await?;
    only(&b, &["reason"])?;
    let to = d.rollback(&reason(&b)?)?;
    let mut st = state_json(d);
    st["rolled_back_to"] = json!(to);
    Ok(axum::Json(st))
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names() {
        assert_eq!(host_name("localhost:8000"), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("evil.example:80"), "evil.example");
    }
}
