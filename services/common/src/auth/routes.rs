//! A service's routes, each declared with who may call it. [`Routes`] is the only way a
//! service hands routes to its HTTP endpoint ([`crate::Host::start`]), and it keeps a table of
//! what it built, so a test can walk every route of every service and prove that none answers
//! without the right role.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Extension, Router};

use super::{Authenticator, Principal, Rejection, Role, Via};
use crate::audit;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: probes and the login endpoints only.
    Open,
    /// A principal holding this role.
    Role(Role),
}

/// One row of a router's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

/// A router plus the table of its routes.
#[derive(Clone)]
pub struct Routes<S = ()> {
    router: Router<S>,
    table: Vec<RouteSpec>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes {
            router: Router::new(),
            table: Vec::new(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.add(Method::GET, path, access, axum::routing::get(handler))
    }

    pub fn post<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.add(Method::POST, path, access, axum::routing::post(handler))
    }

    fn add(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        route: MethodRouter<S, Infallible>,
    ) -> Self {
        let route = match access {
            Access::Open => route,
            Access::Role(role) => {
                route.route_layer(middleware::from_fn(move |req: Request, next: Next| {
                    enforce(role, req, next)
                }))
            }
        };
        self.router = self.router.route(path, route);
        self.table.push(RouteSpec {
            method,
            path,
            access,
        });
        self
    }

    /// Gives the routes their state (axum's `Router::with_state`).
    pub fn with_state<S2: Clone + Send + Sync + 'static>(self, state: S) -> Routes<S2> {
        Routes {
            router: self.router.with_state(state),
            table: self.table,
        }
    }
}

impl Routes<()> {
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    pub fn table(&self) -> &[RouteSpec] {
        &self.table
    }

    /// The servable router: every route checks its callers with `auth`.
    pub fn into_app(self, auth: Arc<Authenticator>) -> Router {
        self.router.layer(Extension(auth))
    }
}

/// The per-route check: who is calling, may they, and (for a cookie session changing
/// something) is it really the page and not a forged cross-site request.
async fn enforce(role: Role, mut req: Request, next: Next) -> Response {
    let Some(auth) = req.extensions().get::<Arc<Authenticator>>().cloned() else {
        // A route served outside `into_app`: fail closed rather than open.
        tracing::error!(path = %req.uri().path(), "route has no authenticator; refusing");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "access control not configured",
        )
            .into_response();
    };
    let path = req.uri().path().to_string();
    let principal = match auth.authenticate(req.headers()) {
        Ok(p) => p,
        Err(r) => {
            if r != Rejection::Missing {
                audit::access_refused(None, req.method(), &path, role, &r.to_string());
            }
            return unauthenticated(req.headers());
        }
    };
    if principal.via == Via::Session
        && !req.method().is_safe()
        && !auth.sessions().csrf_ok(req.headers())
    {
        audit::access_refused(Some(&principal), req.method(), &path, role, "csrf");
        return (
            StatusCode::FORBIDDEN,
            "CSRF token missing or wrong; reload the page",
        )
            .into_response();
    }
    if !principal.has(role) {
        audit::access_refused(Some(&principal), req.method(), &path, role, "role");
        return (StatusCode::FORBIDDEN, format!("this needs the {role} role")).into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

const LOGIN_PAGE: &str = include_str!("login.html");

/// 401, with the login page for a browser and a hint for a program.
pub fn unauthenticated(headers: &HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let challenge = [(header::WWW_AUTHENTICATE, "Bearer realm=\"cxrflow\"")];
    if wants_html {
        let mut res = crate::http::page(StatusCode::UNAUTHORIZED, LOGIN_PAGE);
        let [(name, value)] = challenge;
        res.headers_mut()
            .insert(name, axum::http::HeaderValue::from_static(value));
        res
    } else {
        (
            StatusCode::UNAUTHORIZED,
            challenge,
            "unauthenticated: send `Authorization: Bearer <API key or token>`, or log in (POST /auth/login)",
        )
            .into_response()
    }
}

/// The caller of a protected route (set by the route's check). Missing means the handler
/// runs on an unprotected route: refused, never served as anonymous.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "route has no access check",
        ))
    }
}
