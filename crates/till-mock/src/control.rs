//! The `/_mock/*` control API for tests, without authentication:
//!
//! - `GET /_mock/requests`: every request seen so far (control requests excluded), oldest first.
//! - `DELETE /_mock/requests`: forget them and the usage below; answers `{"cleared": N}`.
//! - `GET /_mock/usage`: what the answers so far reported, added up:
//!   `{"answers": N, "input_tokens": N, "output_tokens": N}`.
//! - `GET /_mock/keys`: every key with its id, value, name, status and owner.
//! - `POST /_mock/keys` with `{"value": KEY, "name"?: NAME}`: accept one more key; answers the
//!   key (201).

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::router::{Ctx, Resp, json};
use super::state::{KeyInfo, KeyStatus, lock, random_token};
use super::time_now;

pub(crate) fn route(ctx: &Ctx<'_>, rest: &str) -> Resp {
    match (ctx.method, rest) {
        (&Method::GET, "requests") => {
            let requests = lock(&ctx.state.requests).clone();
            json(StatusCode::OK, &json!(requests))
        }
        (&Method::DELETE, "requests") => {
            let mut requests = lock(&ctx.state.requests);
            let cleared = requests.len();
            requests.clear();
            *lock(&ctx.state.billed) = (0, 0, 0);
            json(StatusCode::OK, &json!({"cleared": cleared}))
        }
        (&Method::GET, "usage") => {
            let (answers, input, output) = *lock(&ctx.state.billed);
            json(
                StatusCode::OK,
                &json!({"answers": answers, "input_tokens": input, "output_tokens": output}),
            )
        }
        (&Method::GET, "keys") => json(StatusCode::OK, &json!(ctx.state.keys.list())),
        (&Method::POST, "keys") => {
            let body = ctx.json_body().unwrap_or(Value::Null);
            let Some(value) = body.get("value").and_then(Value::as_str) else {
                return json(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "expected {\"value\": KEY, \"name\"?: NAME}"}),
                );
            };
            let name = body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("Added key");
            let key = ctx.state.keys.add(KeyInfo {
                id: format!("key_{}", random_token(16)),
                value: value.to_owned(),
                name: name.to_owned(),
                status: KeyStatus::Active,
                created_at: time_now(),
                service_account_id: None,
            });
            json(StatusCode::CREATED, &json!(key))
        }
        _ => json(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no control route {} /_mock/{rest}", ctx.method)}),
        ),
    }
}
