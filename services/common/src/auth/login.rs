//! `/auth/login`, `/auth/logout`, `/auth/session`: how a browser trades an API key or a token
//! for a session cookie, and how the page learns its CSRF token. Served by every service.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::routes::unauthenticated;
use super::{Access, Authenticator, Role, Routes, Via};
use crate::audit;

#[derive(Deserialize)]
struct LoginRequest {
    credential: String,
}

/// What the page knows about its session; `csrf` goes into `X-CSRF-Token` on every POST.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionView {
    pub principal: String,
    pub roles: Vec<Role>,
    pub csrf: Option<String>,
    pub insecure: bool,
}

/// The login routes, open by necessity (they are how one gets a credential in).
pub fn routes(auth: Arc<Authenticator>) -> Routes {
    Routes::new()
        .post("/auth/login", Access::Open, login)
        .post("/auth/logout", Access::Open, logout)
        .get("/auth/session", Access::Open, session)
        .with_state(auth)
}

async fn login(
    State(auth): State<Arc<Authenticator>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // Login CSRF: another site must not sign a browser in (to its own key).
    if !super::session::same_origin(&headers) {
        audit::login(Err("cross-origin login"));
        return (StatusCode::FORBIDDEN, "cross-origin login refused").into_response();
    }
    let Ok(req) = serde_json::from_slice::<LoginRequest>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {\"credential\": \"...\"}",
        )
            .into_response();
    };
    let p = match auth.check_credential(req.credential.trim()) {
        Ok(p) => p,
        Err(r) => {
            audit::login(Err(&r.to_string()));
            return (StatusCode::UNAUTHORIZED, "login refused").into_response();
        }
    };
    audit::login(Ok(&p));
    let (cookie, s) = auth.sessions().seal(&p);
    let view = SessionView {
        principal: p.id.clone(),
        roles: p.roles.iter().copied().collect(),
        csrf: Some(s.csrf),
        insecure: auth.is_insecure(),
    };
    (
        [(
            header::SET_COOKIE,
            auth.sessions().set_cookie(&cookie, &headers),
        )],
        Json(view),
    )
        .into_response()
}

async fn logout(State(auth): State<Arc<Authenticator>>) -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth.sessions().clear_cookie())],
    )
        .into_response()
}

async fn session(State(auth): State<Arc<Authenticator>>, headers: HeaderMap) -> Response {
    let p = match auth.authenticate(&headers) {
        Ok(p) => p,
        Err(_) => return unauthenticated(&HeaderMap::new()),
    };
    let csrf = match p.via {
        Via::Session => super::session::cookie_value(&headers)
            .and_then(|v| auth.sessions().open(v).ok())
            .map(|s| s.csrf),
        _ => None,
    };
    Json(SessionView {
        principal: p.id,
        roles: p.roles.into_iter().collect(),
        csrf,
        insecure: auth.is_insecure(),
    })
    .into_response()
}
