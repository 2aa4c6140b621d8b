//! The admin key APIs used to test rotation: OpenAI's project service accounts and API keys
//! (`/v1/organization/projects/{project}/…`) and Anthropic's API keys
//! (`/v1/organizations/api_keys…`). Both act on the one key store: a key made here is accepted
//! at once; a key deleted or deactivated here stops being accepted at once.
//!
//! Projects are not modelled: every project id sees every key.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::router::{Ctx, Outcome, Resp, json, key_hint};
use super::state::{KeyInfo, KeyStatus, ServiceAccount, random_token};
use super::{anthropic, openai, time_now};
use crate::rfc3339;

/// The user every initial key belongs to.
const OWNER_ID: &str = "user_mock";

/// Routes `/v1/organization/{rest}` (OpenAI).
pub(crate) fn openai(ctx: &Ctx<'_>, rest: &str) -> Outcome {
    let segments: Vec<&str> = rest.split('/').collect();
    let method = ctx.method;
    // Decide the route before authenticating, so unknown paths are 404 whatever the key.
    let known = matches!(
        (method, segments.as_slice()),
        (
            &Method::GET | &Method::POST,
            ["projects", _, "service_accounts"]
        ) | (
            &Method::GET | &Method::DELETE,
            ["projects", _, "service_accounts", _]
        ) | (&Method::GET, ["projects", _, "api_keys"])
            | (
                &Method::GET | &Method::DELETE,
                ["projects", _, "api_keys", _]
            )
    );
    if !known {
        return openai::not_found(ctx).into();
    }
    match ctx.bearer() {
        Some(key) if ctx.state.keys.is_admin(key) => {}
        Some(key) if ctx.state.keys.is_known(key) => {
            return openai::error(
                StatusCode::FORBIDDEN,
                "You have insufficient permissions for this operation. Missing scopes: api.management.read. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.",
                "invalid_request_error",
                None,
            )
            .into();
        }
        Some(key) => return openai::invalid_key(key).into(),
        None => return openai::missing_key().into(),
    }
    let resp = match (method, segments.as_slice()) {
        (&Method::POST, ["projects", project, "service_accounts"]) => {
            create_service_account(ctx, project)
        }
        (&Method::GET, ["projects", _, "service_accounts"]) => {
            let data: Vec<Value> = ctx
                .state
                .keys
                .accounts()
                .iter()
                .map(service_account_object)
                .collect();
            json(StatusCode::OK, &list(data))
        }
        (&Method::GET, ["projects", _, "service_accounts", id]) => {
            match ctx.state.keys.account(id) {
                Some(account) => json(StatusCode::OK, &service_account_object(&account)),
                None => openai_not_found("service account", id),
            }
        }
        (&Method::DELETE, ["projects", _, "service_accounts", id]) => {
            if ctx.state.keys.remove_account(id) {
                json(
                    StatusCode::OK,
                    &json!({"object": "organization.project.service_account.deleted", "id": id, "deleted": true}),
                )
            } else {
                openai_not_found("service account", id)
            }
        }
        (&Method::GET, ["projects", _, "api_keys"]) => {
            let keys = ctx.state.keys.list();
            let data: Vec<Value> = keys
                .iter()
                .filter(|k| k.status != KeyStatus::Deleted)
                .map(|k| openai_key_object(ctx, k))
                .collect();
            json(StatusCode::OK, &list(data))
        }
        (&Method::GET, ["projects", _, "api_keys", id]) => match ctx.state.keys.get(id) {
            Some(key) => json(StatusCode::OK, &openai_key_object(ctx, &key)),
            None => openai_not_found("API key", id),
        },
        (&Method::DELETE, ["projects", _, "api_keys", id]) => {
            match ctx.state.keys.set_status(id, KeyStatus::Deleted) {
                Some(_) => json(
                    StatusCode::OK,
                    &json!({"object": "organization.project.api_key.deleted", "id": id, "deleted": true}),
                ),
                None => openai_not_found("API key", id),
            }
        }
        _ => openai::not_found(ctx),
    };
    resp.into()
}

fn openai_not_found(what: &str, id: &str) -> Resp {
    openai::error(
        StatusCode::NOT_FOUND,
        &format!("No such {what}: '{id}'"),
        "invalid_request_error",
        None,
    )
}

fn list(data: Vec<Value>) -> Value {
    let id = |v: Option<&Value>| v.and_then(|v| v.get("id")).cloned().unwrap_or(Value::Null);
    json!({
        "object": "list",
        "first_id": id(data.first()),
        "last_id": id(data.last()),
        "has_more": false,
        "data": data
    })
}

fn service_account_object(account: &ServiceAccount) -> Value {
    json!({
        "object": "organization.project.service_account",
        "id": account.id,
        "name": account.name,
        "role": "member",
        "created_at": account.created_at
    })
}

fn create_service_account(ctx: &Ctx<'_>, project: &str) -> Resp {
    let Some(name) = ctx
        .json_body()
        .and_then(|b| b.get("name").and_then(Value::as_str).map(str::to_owned))
    else {
        return openai::error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'name'.",
            "invalid_request_error",
            None,
        );
    };
    let now = time_now();
    let account = ServiceAccount {
        id: format!("svc_acct_{}", random_token(24)),
        name,
        project_id: project.to_owned(),
        created_at: now,
    };
    let key = ctx.state.keys.add(KeyInfo {
        id: format!("key_{}", random_token(16)),
        value: format!("sk-svcacct-{}", random_token(48)),
        name: "Secret Key".to_owned(),
        status: KeyStatus::Active,
        created_at: now,
        service_account_id: Some(account.id.clone()),
    });
    ctx.state.keys.add_account(account.clone());
    let mut object = service_account_object(&account);
    object["api_key"] = json!({
        "object": "organization.project.service_account.api_key",
        "value": key.value,
        "name": key.name,
        "created_at": key.created_at,
        "id": key.id
    });
    json(StatusCode::CREATED, &object)
}

fn openai_key_object(ctx: &Ctx<'_>, key: &KeyInfo) -> Value {
    let owner = match key
        .service_account_id
        .as_deref()
        .and_then(|id| ctx.state.keys.account(id))
    {
        Some(account) => json!({
            "type": "service_account",
            "service_account": service_account_object(&account)
        }),
        None => json!({
            "type": "user",
            "user": {
                "object": "organization.project.user",
                "id": OWNER_ID,
                "name": "Mock User",
                "email": "mock@example.com",
                "role": "owner",
                "added_at": key.created_at
            }
        }),
    };
    json!({
        "object": "organization.project.api_key",
        "redacted_value": key_hint(&key.value),
        "name": key.name,
        "created_at": key.created_at,
        "last_used_at": key.created_at,
        "id": key.id,
        "owner": owner
    })
}

/// Routes `/v1/organizations/{rest}` (Anthropic).
pub(crate) fn anthropic(ctx: &Ctx<'_>, rest: &str, request_id: &str) -> Outcome {
    let segments: Vec<&str> = rest.split('/').collect();
    let known = matches!(
        (ctx.method, segments.as_slice()),
        (&Method::GET, ["api_keys"]) | (&Method::GET | &Method::POST, ["api_keys", _])
    );
    if !known {
        return anthropic::not_found(request_id).into();
    }
    if let Some(key) = anthropic::request_key(ctx)
        && !ctx.state.keys.is_admin(key)
        && ctx.state.keys.is_known(key)
    {
        return anthropic::error(
            StatusCode::FORBIDDEN,
            "permission_error",
            "This endpoint requires an Admin API key.",
            request_id,
        )
        .into();
    }
    if let Some(resp) = anthropic::rejection(ctx, request_id, |key| ctx.state.keys.is_admin(key)) {
        return resp.into();
    }
    let resp = match (ctx.method, segments.as_slice()) {
        (&Method::GET, ["api_keys"]) => {
            let wanted = ctx.query_param("status");
            let data: Vec<Value> = ctx
                .state
                .keys
                .list()
                .iter()
                .filter(|k| k.status != KeyStatus::Deleted)
                .filter(|k| wanted.as_deref().is_none_or(|s| s == k.status.as_str()))
                .map(anthropic_key_object)
                .collect();
            let id = |v: Option<&Value>| v.and_then(|v| v.get("id")).cloned();
            json(
                StatusCode::OK,
                &json!({
                    "first_id": id(data.first()),
                    "last_id": id(data.last()),
                    "has_more": false,
                    "data": data
                }),
            )
        }
        (&Method::GET, ["api_keys", id]) => match ctx.state.keys.get(id) {
            Some(key) => json(StatusCode::OK, &anthropic_key_object(&key)),
            None => anthropic_not_found(id, request_id),
        },
        (&Method::POST, ["api_keys", id]) => update_anthropic_key(ctx, id, request_id),
        _ => anthropic::not_found(request_id),
    };
    resp.into()
}

fn anthropic_not_found(id: &str, request_id: &str) -> Resp {
    anthropic::error(
        StatusCode::NOT_FOUND,
        "not_found_error",
        &format!("API key not found: {id}"),
        request_id,
    )
}

fn update_anthropic_key(ctx: &Ctx<'_>, id: &str, request_id: &str) -> Resp {
    let invalid = |message: &str| {
        anthropic::error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message,
            request_id,
        )
    };
    let Some(body) = ctx.json_body() else {
        return invalid("The request body is not valid JSON.");
    };
    let Some(current) = ctx.state.keys.get(id) else {
        return anthropic_not_found(id, request_id);
    };
    let status = match body.get("status") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "active" => Some(KeyStatus::Active),
        Some(Value::String(s)) if s == "inactive" => Some(KeyStatus::Inactive),
        Some(Value::String(s)) if s == "archived" => Some(KeyStatus::Archived),
        Some(_) => return invalid("status: Input should be 'active', 'inactive' or 'archived'"),
    };
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if (1..=500).contains(&s.chars().count()) => Some(s.as_str()),
        Some(_) => return invalid("name: String should have between 1 and 500 characters"),
    };
    if current.status == KeyStatus::Archived && (status.is_some() || name.is_some()) {
        return invalid("Cannot update an archived API key.");
    }
    let mut updated = current;
    if let Some(name) = name {
        updated = ctx.state.keys.rename(id, name).unwrap_or(updated);
    }
    if let Some(status) = status {
        updated = ctx.state.keys.set_status(id, status).unwrap_or(updated);
    }
    json(StatusCode::OK, &anthropic_key_object(&updated))
}

fn anthropic_key_object(key: &KeyInfo) -> Value {
    json!({
        "id": key.id,
        "type": "api_key",
        "name": key.name,
        "status": key.status.as_str(),
        "partial_key_hint": key_hint(&key.value),
        "created_at": rfc3339(key.created_at),
        "created_by": {"id": OWNER_ID, "type": "user"},
        "workspace_id": null,
        "expires_at": null
    })
}
