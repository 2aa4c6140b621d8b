//! Whether one scope is narrower than another: what a parent key allows, folded over its
//! levels, and the comparisons `ScopeSpec::check_narrower` makes against it.

use super::ScopeError;
use crate::childkey::{Caveat, EndpointSet, ModelPattern, Token};

/// What the parent allows, folded over all its levels (for [`ScopeSpec::check_narrower`]).
pub(super) struct Effective {
    pub(super) allow: Vec<Vec<ModelPattern>>,
    /// `None` when the parent's endpoint sets leave nothing.
    pub(super) endpoints: Option<EndpointSet>,
    pub(super) expires: Option<u64>,
    pub(super) usd: Option<u64>,
    pub(super) tokens: Option<u64>,
    pub(super) rpm: Option<u64>,
    pub(super) tpm: Option<u64>,
    pub(super) max_requests: Option<u64>,
    pub(super) max_output_tokens: Option<u64>,
    pub(super) sessions: Vec<String>,
}

pub(super) fn min_opt(slot: &mut Option<u64>, v: u64) {
    *slot = Some(slot.map_or(v, |cur| cur.min(v)));
}

impl Effective {
    pub(super) fn of(token: &Token) -> Effective {
        let levels = token.levels();
        let level0 = levels.first().map_or(0..0, |l| l.caveats.clone());
        let caveats = token.caveats();
        // The first level's default, as verification applies it.
        let mut endpoints = Some(
            if caveats[level0]
                .iter()
                .any(|c| matches!(c, Caveat::Endpoints(_)))
            {
                EndpointSet::all()
            } else {
                EndpointSet::inference_only()
            },
        );
        let mut e = Effective {
            allow: Vec::new(),
            endpoints,
            expires: None,
            usd: None,
            tokens: None,
            rpm: None,
            tpm: None,
            max_requests: None,
            max_output_tokens: None,
            sessions: Vec::new(),
        };
        for c in caveats {
            match c {
                Caveat::Allow(p) => e.allow.push(p.clone()),
                Caveat::Endpoints(s) => endpoints = endpoints.and_then(|cur| cur.intersect(*s)),
                Caveat::Expires(v) => min_opt(&mut e.expires, *v),
                Caveat::BudgetUsd(v) => min_opt(&mut e.usd, *v),
                Caveat::BudgetTokens(v) => min_opt(&mut e.tokens, *v),
                Caveat::Rpm(v) => min_opt(&mut e.rpm, u64::from(*v)),
                Caveat::Tpm(v) => min_opt(&mut e.tpm, *v),
                Caveat::MaxRequests(v) => min_opt(&mut e.max_requests, *v),
                Caveat::MaxOutputTokens(v) => min_opt(&mut e.max_output_tokens, *v),
                Caveat::Session(s) => e.sessions.push(s.clone()),
                Caveat::Unknown { .. } => {}
            }
        }
        e.endpoints = endpoints;
        e
    }
}

/// Whether every model the child glob matches is matched by the parent glob.
///
/// Sound, not complete: the child's `*` can only be absorbed by a parent `*`, the child's
/// `?` by a parent `?` or `*`, literals by the same literal, `?` or `*`.
pub(super) fn glob_covers(parent: &str, child: &str) -> bool {
    let p = parent.as_bytes();
    let c = child.as_bytes();
    // reach[j]: the first i parent bytes can produce the first j child bytes.
    let mut reach = vec![false; c.len() + 1];
    reach[0] = true;
    for &pb in p {
        let mut next = vec![false; c.len() + 1];
        for j in 0..=c.len() {
            if pb == b'*' {
                // `*` consumes any run of child tokens: carry reach forward.
                next[j] = reach[j] || (j > 0 && next[j - 1]);
            } else if j > 0 && reach[j - 1] {
                let cb = c[j - 1];
                next[j] = match pb {
                    b'?' => cb != b'*',
                    lit => cb == lit,
                };
            }
        }
        reach = next;
    }
    reach[c.len()]
}

pub(super) fn pattern_covered(parent: &[ModelPattern], child: &ModelPattern) -> bool {
    parent.iter().any(|q| {
        q.provider() == child.provider()
            && (q.is_provider_wide()
                || match (q.model(), child.model()) {
                    (Some(pg), Some(cg)) => pg == cg || glob_covers(pg, cg),
                    _ => false,
                })
    })
}

pub(super) fn join_or_nothing(patterns: &[ModelPattern]) -> String {
    if patterns.is_empty() {
        "nothing".into()
    } else {
        patterns
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub(super) fn wider_than(
    flag: &'static str,
    requested: u64,
    parent: Option<u64>,
    describe: impl Fn(u64) -> String,
    shown: &str,
) -> Result<(), ScopeError> {
    match parent {
        Some(p) if requested > p => Err(ScopeError::Wider {
            flag,
            requested: shown.to_string(),
            parent: describe(p),
        }),
        _ => Ok(()),
    }
}
