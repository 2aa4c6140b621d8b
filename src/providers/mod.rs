//! The provider table: where each provider lives, how it authenticates, which environment
//! variables its SDKs read, and how to tell its endpoints apart.
//!
//! Built-in entries cover OpenAI, Anthropic, Gemini and the OpenAI-compatible Mistral, Groq,
//! OpenRouter, DeepSeek, xAI and Together. `[providers.NAME]` in config.toml overrides any field
//! or adds a provider (OpenAI-compatible unless `api` says otherwise). This module knows no
//! secrets; it only says where a root key goes.
//!
//! Each API family's wire format has its own module ([`openai`], [`anthropic`], [`gemini`])
//! implementing [`Family`]; [`endpoint`] holds what paths are, [`usage`] what a provider
//! reports. This is the domain layer under the proxy: nothing here may import `crate::proxy`,
//! `crate::commands` or `crate::cli`.

pub mod anthropic;
pub mod endpoint;
pub mod family;
pub mod fields;
pub mod gemini;
pub mod openai;
pub mod usage;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::UserError;

pub use endpoint::{Endpoint, Op, classify};
pub use family::{AuthScheme, EventUsage, Family, WsClientEvent, WsRoute, WsServerEvent};
pub use usage::Usage;

/// Which wire format a provider speaks: decides auth headers, endpoint classification, body
/// limits, usage parsing and the shape of error bodies, all through [`ApiFamily::wire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiFamily {
    Openai,
    Anthropic,
    Gemini,
}

impl ApiFamily {
    /// Every family, in the order their body checks run.
    pub const ALL: [ApiFamily; 3] = [ApiFamily::Openai, ApiFamily::Anthropic, ApiFamily::Gemini];

    /// What till knows about this family's wire format: the one place a family is picked.
    pub fn wire(self) -> &'static dyn Family {
        match self {
            ApiFamily::Openai => &openai::Openai,
            ApiFamily::Anthropic => &anthropic::Anthropic,
            ApiFamily::Gemini => &gemini::Gemini,
        }
    }

    pub fn auth_scheme(self) -> AuthScheme {
        self.wire().auth_scheme()
    }
}

/// One provider, resolved from the built-in table and config overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
    pub api: ApiFamily,
    /// Origin without a version segment; `/NAME/REST` on the proxy goes to `base_url/REST`.
    pub base_url: String,
    /// Variables the provider's SDKs read the key from; `till run` sets them to the child key.
    pub key_env: Vec<String>,
    /// Variables the SDKs read a base URL from, with the path suffix each expects after the
    /// proxy's `/NAME` prefix (for example `("OPENAI_BASE_URL", "/v1")`).
    pub base_url_env: Vec<(String, String)>,
    /// Variables holding admin or management keys: removed from agents' environments.
    pub admin_env: Vec<String>,
    /// The usual prefix of this provider's keys (used to warn about mix-ups).
    pub key_prefix: Option<String>,
    /// A cheap authenticated GET that succeeds only with a valid key.
    pub verify_path: String,
    /// Where a person creates a key (shown by `till add` and `till rotate`).
    pub console_url: String,
    /// Headers that choose the account the root key acts for (`OpenAI-Organization`,
    /// `OpenAI-Project`), from config; sent on every request in place of the agent's own.
    pub account_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The upstream is OpenAI's own API, or one that reads requests as it does (Azure OpenAI):
    /// a chat ceiling goes in `max_completion_tokens` (its reasoning models refuse
    /// `max_tokens`), and `metadata` is its labels for stored completions. Otherwise till
    /// writes `max_tokens`, which compatible servers read (`[providers.NAME] openai_itself`).
    pub openai_itself: bool,
}

impl Provider {
    /// The scheme and host (and port) of `base_url`, for messages an agent reads: a path may
    /// hold what a gateway takes as a credential (`https://gateway.example/v1/ACCOUNT/TOKEN`),
    /// which the agent has no business seeing.
    pub fn shown_origin(&self) -> String {
        match http::Uri::try_from(self.base_url.as_str()) {
            Ok(uri) => match (uri.scheme_str(), uri.host()) {
                (Some(scheme), Some(host)) => match uri.port_u16() {
                    Some(port) => format!("{scheme}://{host}:{port}"),
                    None => format!("{scheme}://{host}"),
                },
                _ => "its base_url".to_string(),
            },
            Err(_) => "its base_url".to_string(),
        }
    }

    /// Where a person makes and deletes this provider's keys, for a message's `at …` or
    /// `from …`: the console's address, or words for a provider config.toml added (it has
    /// none).
    pub fn console(&self) -> &str {
        if self.console_url.is_empty() {
            "the provider's console"
        } else {
            &self.console_url
        }
    }
}

struct Builtin {
    name: &'static str,
    api: ApiFamily,
    base_url: &'static str,
    key_env: &'static [&'static str],
    base_url_env: &'static [(&'static str, &'static str)],
    admin_env: &'static [&'static str],
    key_prefix: Option<&'static str>,
    verify_path: &'static str,
    console_url: &'static str,
}

/// Values from each provider's API reference and official SDKs.
const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "openai",
        api: ApiFamily::Openai,
        base_url: "https://api.openai.com",
        key_env: &["OPENAI_API_KEY"],
        base_url_env: &[("OPENAI_BASE_URL", "/v1"), ("OPENAI_API_BASE", "/v1")],
        admin_env: &["OPENAI_ADMIN_KEY"],
        key_prefix: Some("sk-"),
        verify_path: "/v1/models",
        console_url: "https://platform.openai.com/api-keys",
    },
    Builtin {
        name: "anthropic",
        api: ApiFamily::Anthropic,
        base_url: "https://api.anthropic.com",
        key_env: &["ANTHROPIC_API_KEY"],
        base_url_env: &[("ANTHROPIC_BASE_URL", "")],
        admin_env: &["ANTHROPIC_ADMIN_KEY", "ANTHROPIC_AUTH_TOKEN"],
        key_prefix: Some("sk-ant-"),
        verify_path: "/v1/models",
        console_url: "https://console.anthropic.com/settings/keys",
    },
    Builtin {
        name: "gemini",
        api: ApiFamily::Gemini,
        base_url: "https://generativelanguage.googleapis.com",
        key_env: &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        base_url_env: &[("GOOGLE_GEMINI_BASE_URL", ""), ("GEMINI_BASE_URL", "")],
        admin_env: &[],
        key_prefix: Some("AIza"),
        verify_path: "/v1beta/models",
        console_url: "https://aistudio.google.com/apikey",
    },
    Builtin {
        name: "mistral",
        api: ApiFamily::Openai,
        base_url: "https://api.mistral.ai",
        key_env: &["MISTRAL_API_KEY"],
        base_url_env: &[("MISTRAL_BASE_URL", "/v1"), ("MISTRAL_SERVER_URL", "")],
        admin_env: &[],
        key_prefix: None,
        verify_path: "/v1/models",
        console_url: "https://console.mistral.ai/api-keys",
    },
    Builtin {
        name: "groq",
        api: ApiFamily::Openai,
        base_url: "https://api.groq.com",
        key_env: &["GROQ_API_KEY"],
        base_url_env: &[("GROQ_BASE_URL", "")],
        admin_env: &[],
        key_prefix: Some("gsk_"),
        verify_path: "/openai/v1/models",
        console_url: "https://console.groq.com/keys",
    },
    Builtin {
        name: "openrouter",
        api: ApiFamily::Openai,
        base_url: "https://openrouter.ai",
        key_env: &["OPENROUTER_API_KEY"],
        base_url_env: &[("OPENROUTER_BASE_URL", "/api/v1")],
        admin_env: &[],
        key_prefix: Some("sk-or-"),
        verify_path: "/api/v1/key",
        console_url: "https://openrouter.ai/settings/keys",
    },
    Builtin {
        name: "deepseek",
        api: ApiFamily::Openai,
        base_url: "https://api.deepseek.com",
        key_env: &["DEEPSEEK_API_KEY"],
        base_url_env: &[("DEEPSEEK_BASE_URL", "/v1")],
        admin_env: &[],
        key_prefix: Some("sk-"),
        verify_path: "/models",
        console_url: "https://platform.deepseek.com/api_keys",
    },
    Builtin {
        name: "xai",
        api: ApiFamily::Openai,
        base_url: "https://api.x.ai",
        key_env: &["XAI_API_KEY"],
        base_url_env: &[("XAI_BASE_URL", "/v1")],
        admin_env: &[],
        key_prefix: Some("xai-"),
        verify_path: "/v1/models",
        console_url: "https://console.x.ai",
    },
    Builtin {
        name: "together",
        api: ApiFamily::Openai,
        base_url: "https://api.together.xyz",
        key_env: &["TOGETHER_API_KEY"],
        base_url_env: &[("TOGETHER_BASE_URL", "/v1")],
        admin_env: &[],
        key_prefix: None,
        verify_path: "/v1/models",
        console_url: "https://api.together.ai/settings/api-keys",
    },
];

impl Builtin {
    fn resolve(&self) -> Provider {
        Provider {
            name: self.name.to_string(),
            api: self.api,
            base_url: self.base_url.to_string(),
            key_env: self.key_env.iter().map(|s| s.to_string()).collect(),
            base_url_env: self
                .base_url_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            admin_env: self.admin_env.iter().map(|s| s.to_string()).collect(),
            key_prefix: self.key_prefix.map(str::to_string),
            verify_path: self.verify_path.to_string(),
            console_url: self.console_url.to_string(),
            account_headers: Vec::new(),
            openai_itself: self.name == "openai",
        }
    }
}

/// The built-in entry for `name`, without config overrides.
pub fn builtin(name: &str) -> Option<Provider> {
    BUILTINS
        .iter()
        .find(|b| b.name == name)
        .map(Builtin::resolve)
}

/// Names of the built-in providers, in table order.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}

/// Checks that a configured base URL is an absolute http(s) origin (a path is allowed, a query
/// is not).
pub fn validate_base_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("`{url}` has no host"));
    }
    if url.contains(['?', '#', ' ']) {
        return Err(format!(
            "`{url}` must not contain a query, fragment or space"
        ));
    }
    // Both parsers the URL meets later must take it: `till add` checks keys with reqwest,
    // the proxy forwards with hyper; what either refuses (`http://[::1`) would otherwise load
    // and fail only there, as a bare "builder error".
    if let Err(e) = reqwest::Url::parse(url) {
        return Err(format!("`{url}` is not a URL: {e}"));
    }
    if http::Uri::try_from(url).is_err() {
        return Err(format!("`{url}` is not a URL"));
    }
    Ok(())
}

/// The stem of the variables a provider of the config's own gets in the agent's environment
/// (`STEM_API_KEY`, `STEM_BASE_URL`): its name in capitals, `-` read as `_`.
pub fn env_stem(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// Every provider known to this config: built-ins with overrides applied, then the
/// config's own additions.
#[derive(Debug, Clone)]
pub struct Providers {
    by_name: BTreeMap<String, Provider>,
}

impl Providers {
    pub fn from_config(config: &Config) -> Self {
        let mut by_name: BTreeMap<String, Provider> = BUILTINS
            .iter()
            .map(|b| (b.name.to_string(), b.resolve()))
            .collect();
        for (name, over) in &config.providers {
            let upper = env_stem(name);
            let entry = by_name.entry(name.clone()).or_insert_with(|| Provider {
                name: name.clone(),
                api: over.api.unwrap_or(ApiFamily::Openai),
                base_url: String::new(),
                key_env: vec![format!("{upper}_API_KEY")],
                base_url_env: vec![(format!("{upper}_BASE_URL"), "/v1".to_string())],
                admin_env: Vec::new(),
                key_prefix: None,
                verify_path: "/v1/models".to_string(),
                console_url: String::new(),
                account_headers: Vec::new(),
                openai_itself: false,
            });
            if let Some(url) = &over.base_url {
                entry.base_url = url.trim_end_matches('/').to_string();
            }
            if let Some(api) = over.api {
                entry.api = api;
            }
            if let Some(v) = &over.key_env {
                entry.key_env = v.clone();
            }
            if let Some(v) = &over.base_url_env {
                entry.base_url_env = v.iter().map(|k| (k.clone(), String::new())).collect();
            }
            if let Some(p) = &over.key_prefix {
                entry.key_prefix = Some(p.clone());
            }
            if let Some(p) = &over.verify_path {
                entry.verify_path = p.clone();
            }
            if let Some(itself) = over.openai_itself {
                entry.openai_itself = itself;
            }
            // Checked by config's loading as ids: visible ASCII, so each makes a header value.
            for (name, id) in [
                ("openai-organization", &over.organization),
                ("openai-project", &over.project),
            ] {
                if let Some(value) = id
                    .as_deref()
                    .and_then(|v| http::HeaderValue::from_str(v).ok())
                {
                    entry
                        .account_headers
                        .push((http::HeaderName::from_static(name), value));
                }
            }
        }
        Self { by_name }
    }

    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.by_name.get(name)
    }

    /// The provider called `name`, or a usage error listing the known ones.
    pub fn require(&self, name: &str) -> Result<&Provider, UserError> {
        self.get(name).ok_or_else(|| {
            let known: Vec<String> = self.names().into_iter().map(String::from).collect();
            let lower = name.to_ascii_lowercase();
            let hint = match crate::scope::closest(name, &known) {
                // Names are lowercase: `OpenAI` is `openai`.
                _ if lower != name && self.get(&lower).is_some() => {
                    format!("provider names are lowercase: `{lower}`")
                }
                Some(near) => format!("did you mean `{near}`?"),
                None => format!(
                    "known providers: {}; describe others under [providers.NAME] in config.toml",
                    known.join(", ")
                ),
            };
            UserError::usage(format!("unknown provider `{name}`")).hint(hint)
        })
    }

    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.by_name.values()
    }

    /// The provider whose usual key prefix matches `key` best (longest prefix), if any.
    pub fn guess_from_key(&self, key: &str) -> Option<&Provider> {
        self.iter()
            .filter(|p| {
                p.key_prefix
                    .as_deref()
                    .is_some_and(|pre| key.starts_with(pre))
            })
            .max_by_key(|p| p.key_prefix.as_ref().map_or(0, String::len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_and_provider_tools_add_to_the_prompts_bound() {
        let map = |v: serde_json::Value| v.as_object().cloned().unwrap();
        let chat = map(serde_json::json!({"messages": [{"content": [
            {"type": "text", "text": "x"},
            {"type": "image_url", "image_url": {"url": "https://e.x/a.png"}},
            {"type": "input_image", "image_url": "https://e.x/b.png"}
        ]}]}));
        let openai = ApiFamily::Openai.wire();
        assert_eq!(
            openai.hidden_input(Op::OpenaiChat, Some("gpt-5"), &chat),
            32_768
        );
        assert_eq!(
            openai.hidden_input(Op::OpenaiChat, Some("openai/gpt-4o-mini"), &chat),
            96_338
        );
        let plain = map(serde_json::json!({"messages": [{"content": "x"}]}));
        assert_eq!(
            openai.hidden_input(Op::OpenaiChat, Some("gpt-5"), &plain),
            0
        );
        // As a case-folding server reads the part.
        let folded = map(serde_json::json!({"messages": [{"content": [
            {"type": "text", "text": "x", "Type": "image_url", "image_url": {"url": "u"}}
        ]}]}));
        assert_eq!(
            openai.hidden_input(Op::OpenaiChat, Some("gpt-5"), &folded),
            16_384
        );

        let anthropic = ApiFamily::Anthropic.wire();
        let msg = map(serde_json::json!({
            "tools": [{"name": "f", "input_schema": {}}, {"type": "bash_20250124", "name": "bash"}],
            "messages": [{"content": [{"type": "tool_result", "content": [{"type": "image"}]}]}]
        }));
        assert_eq!(
            anthropic.hidden_input(Op::AnthropicMessages, None, &msg),
            500 + 1_500 + 5_000
        );
        assert_eq!(
            anthropic.hidden_input(Op::AnthropicCountTokens, None, &msg),
            0
        );

        let gemini = ApiFamily::Gemini.wire();
        let parts = map(serde_json::json!({"contents": [{"parts": [
            {"inlineData": {"mimeType": "IMAGE/png", "data": ""}},
            {"inline_data": {"data": ""}},
            {"inlineData": {"mimeType": "audio/mp3", "data": ""}},
            {"InlineData": {"MimeType": "image/png", "data": ""}},
            {"inlineData": {"mimeType": "application/pdf", "mime_type": "image/png", "data": ""}}
        ]}]}));
        // Four images; the PDF and the audio (refused before this) may fill the context.
        assert_eq!(
            gemini.hidden_input(Op::GeminiGenerate, None, &parts),
            20_000 + gemini::MAX_PROMPT
        );
        let bounded = map(serde_json::json!({"contents": [{"parts": [
            {"inlineData": {"mimeType": "image/png", "data": ""}},
            {"inlineData": {"mimeType": "TEXT/plain", "data": ""}}
        ]}]}));
        assert_eq!(
            gemini.hidden_input(Op::GeminiGenerate, None, &bounded),
            5_000
        );
        let pdf = map(serde_json::json!({"contents": [{"parts": [
            {"InlineData": {"MimeType": "application/pdf", "data": ""}},
            {"inlineData": {"mimeType": "application/pdf", "data": ""}}
        ]}]}));
        assert_eq!(
            gemini.hidden_input(Op::GeminiGenerate, None, &pdf),
            gemini::MAX_PROMPT
        );
    }

    #[test]
    fn a_pdf_may_fill_the_context_and_text_documents_are_their_bytes() {
        let map = |v: serde_json::Value| v.as_object().cloned().unwrap();
        let anthropic = ApiFamily::Anthropic.wire();
        let hidden = |content: serde_json::Value| {
            anthropic.hidden_input(
                Op::AnthropicMessages,
                None,
                &map(serde_json::json!({"messages": [{"role": "user", "content": content}]})),
            )
        };
        let pdf = serde_json::json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}});
        assert_eq!(hidden(serde_json::json!([pdf])), anthropic::MAX_PROMPT);
        // Once, however many: the context bounds them together.
        assert_eq!(
            hidden(serde_json::json!([pdf, pdf, {"type": "image", "source": {"type": "base64"}}])),
            anthropic::MAX_PROMPT + 5_000
        );
        // Inside a tool result, and with the source's type as a case-folding server reads it.
        assert_eq!(
            hidden(serde_json::json!([{"type": "tool_result", "content": [pdf]}])),
            anthropic::MAX_PROMPT
        );
        assert_eq!(
            hidden(
                serde_json::json!([{"type": "document", "source": {"type": "text", "Type": "base64", "data": "x"}}])
            ),
            anthropic::MAX_PROMPT
        );
        assert_eq!(
            hidden(serde_json::json!([{"type": "document"}])),
            anthropic::MAX_PROMPT
        );
        for bounded in [
            serde_json::json!({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}),
            serde_json::json!({"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "x"}]}}),
        ] {
            assert_eq!(hidden(serde_json::json!([bounded])), 0);
        }
    }

    #[test]
    fn builtins_have_valid_urls_and_unique_names() {
        let names = builtin_names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        for b in BUILTINS {
            validate_base_url(b.base_url).unwrap();
            assert!(b.verify_path.starts_with('/'));
            assert!(!b.key_env.is_empty());
        }
    }

    #[test]
    fn key_prefix_guess_prefers_longest() {
        let p = Providers::from_config(&Config::default());
        assert_eq!(
            p.guess_from_key("sk-ant-api03-xyz").unwrap().name,
            "anthropic"
        );
        assert_eq!(p.guess_from_key("gsk_abc").unwrap().name, "groq");
        assert!(p.guess_from_key("nothing-known").is_none());
    }

    #[test]
    fn unknown_provider_lists_known_ones() {
        let p = Providers::from_config(&Config::default());
        let err = p.require("opnai").unwrap_err();
        assert!(err.hint.unwrap().contains("openai"));
    }

    #[test]
    fn config_adds_and_overrides() {
        let c = Config::parse(
            "[providers.local]\nbase_url = \"http://127.0.0.1:8080/\"\n[providers.openai]\nbase_url = \"http://127.0.0.1:9\"\n",
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        let p = Providers::from_config(&c);
        assert_eq!(p.get("local").unwrap().base_url, "http://127.0.0.1:8080");
        assert_eq!(p.get("local").unwrap().key_env, vec!["LOCAL_API_KEY"]);
        assert_eq!(p.get("openai").unwrap().base_url, "http://127.0.0.1:9");
    }
}
