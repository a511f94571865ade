//! Route enumeration: every HTTP route of every service, taken from the table its router was
//! built from (the same functions the services serve), answers 401 without a credential, 403
//! with a key lacking the route's role, and neither with a key holding only that role. A
//! route added without a role fails here unless it is one of the few that must stay open.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use cxrflow_common::auth::keys::{self, ApiKeys};
use cxrflow_common::auth::{Access, Authenticator, Role, RouteSpec, Routes};
use cxrflow_common::health::Health;
use cxrflow_common::http::{endpoint, serve, Readiness};
use cxrflow_feedback::performance::{Performance, UncertaintyPolicy};
use reqwest::{Method, StatusCode};
use tokio_util::sync::CancellationToken;

/// Routes that answer anyone: the probes and the way in.
const OPEN: [&str; 5] = [
    "/healthz",
    "/readyz",
    "/auth/login",
    "/auth/logout",
    "/auth/session",
];

/// Every service's own routes, built by the functions its `run` uses.
fn services() -> Vec<(&'static str, Routes)> {
    let triage = cxrflow_triage::http::routes(cxrflow_triage::http::WebState {
        engine: Arc::new(OnceLock::new()),
        blobs: None,
        viewer_url: None,
    });
    let feedback = Arc::new(Performance::new(10, UncertaintyPolicy::UOnes)).routes();
    let gateway = cxrflow_gateway::stow::routes(Default::default());
    vec![
        ("triage", triage),
        ("feedback", feedback),
        ("gateway", gateway),
        ("results", cxrflow_results::routes()),
        // No routes of their own: the shared endpoint only.
        ("ingest/preprocess/inference/drift", Routes::new()),
    ]
}

/// Per role: a key holding only it, and a key holding every other role.
struct RoleKeys {
    only: Vec<(Role, String)>,
    all_but: Vec<(Role, String)>,
}

fn role_keys() -> (RoleKeys, ApiKeys) {
    let mut lines = String::new();
    let (mut only, mut all_but) = (Vec::new(), Vec::new());
    for r in Role::ALL {
        let (k, line) = keys::generate(&format!("only-{r}"), &[r].into_iter().collect());
        lines += &format!("{line}\n");
        only.push((r, k));
        let rest: BTreeSet<Role> = Role::ALL.into_iter().filter(|o| *o != r).collect();
        let (k, line) = keys::generate(&format!("all-but-{r}"), &rest);
        lines += &format!("{line}\n");
        all_but.push((r, k));
    }
    (RoleKeys { only, all_but }, ApiKeys::parse(&lines).unwrap())
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_of_every_service_needs_its_role() {
    let (rk, api_keys) = role_keys();
    let auth = Arc::new(Authenticator::with(api_keys, None));
    let http = reqwest::Client::new();
    let mut checked = 0;
    for (service, routes) in services() {
        let table: Vec<RouteSpec> = endpoint(
            Default::default(),
            Readiness::default(),
            Health::default(),
            auth.clone(),
            routes.clone(),
        )
        .table()
        .to_vec();
        let stop = CancellationToken::new();
        let (addr, _) = serve(
            "127.0.0.1:0".parse().unwrap(),
            None,
            None,
            Default::default(),
            Readiness::default(),
            Health::default(),
            auth.clone(),
            routes,
            stop.clone(),
        )
        .await
        .unwrap();
        for spec in table {
            let url = format!("http://{addr}{}", concrete(spec.path));
            let send = |key: Option<&str>| {
                let mut r = http.request(spec.method.clone(), &url);
                if let Some(k) = key {
                    r = r.bearer_auth(k);
                }
                if spec.method == Method::POST {
                    r = r.body("{}");
                }
                r.send()
            };
            let role = match spec.access {
                Access::Open => {
                    assert!(
                        OPEN.contains(&spec.path),
                        "{service}: {} {} is open to anyone; give it a role",
                        spec.method,
                        spec.path
                    );
                    continue;
                }
                Access::Role(r) => r,
            };
            let what = format!("{service}: {} {} (needs {role})", spec.method, spec.path);
            let none = send(None).await.unwrap().status();
            assert_eq!(none, StatusCode::UNAUTHORIZED, "{what} without a key");
            let bad = send(Some("cxrk_forged")).await.unwrap().status();
            assert_eq!(bad, StatusCode::UNAUTHORIZED, "{what} with an unknown key");
            let wrong = &rk.all_but.iter().find(|(r, _)| *r == role).unwrap().1;
            let s = send(Some(wrong)).await.unwrap().status();
            assert_eq!(s, StatusCode::FORBIDDEN, "{what} with every other role");
            let right = &rk.only.iter().find(|(r, _)| *r == role).unwrap().1;
            let s = send(Some(right)).await.unwrap().status();
            assert!(
                s != StatusCode::UNAUTHORIZED && s != StatusCode::FORBIDDEN,
                "{what} with its role: {s}"
            );
            checked += 1;
        }
        stop.cancel();
    }
    // /metrics per service, plus triage's 5, feedback's 1 and the gateway's 2.
    assert!(
        checked >= 4 + 5 + 1 + 2,
        "only {checked} protected routes checked"
    );
}
