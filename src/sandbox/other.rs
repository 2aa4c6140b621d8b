//! The sandbox seam for systems without an implementation yet (macOS, Windows, other unixes):
//! every request is refused, so `--sandbox` never runs an agent unsandboxed.
//!
//! A macOS version would write a `sandbox-exec` (Seatbelt) profile from the same [`Policy`]:
//! `(deny file-read* (subpath …))` for the hidden paths, `(allow file-write* (subpath cwd))`,
//! `(deny mach-lookup (global-name "com.apple.SecurityServer"))` for the keychain, and
//! `(deny network-outbound)` except the proxy's port for `--net proxy`. Windows would need an
//! AppContainer or a restricted token with a low-integrity label. Neither is done.

use std::process::Command;
use std::sync::Arc;

use super::{Policy, SandboxError};

/// The platform's name in the refusal.
fn platform() -> &'static str {
    if cfg!(target_os = "macos") {
        "macOS"
    } else if cfg!(windows) {
        "Windows"
    } else {
        "this system"
    }
}

pub fn check_supported(_simulate_missing: Option<&str>) -> Result<(), SandboxError> {
    Err(SandboxError::Unsupported(platform()))
}

/// Never constructed: [`check_supported`] refuses first.
pub enum Launch {}

impl Launch {
    pub fn new(_policy: &Policy) -> Result<Self, SandboxError> {
        Err(SandboxError::Unsupported(platform()))
    }

    pub fn command(&mut self, _program: &std::ffi::OsStr, _rest: &[std::ffi::OsString]) -> Command {
        match *self {}
    }

    pub fn stop(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        match *self {}
    }

    pub fn end_leftovers(&mut self) -> usize {
        match *self {}
    }

    pub fn started(
        &mut self,
        _proxy: Option<Arc<crate::proxy::State>>,
        _helper: u32,
    ) -> Result<(), SandboxError> {
        match *self {}
    }
}

/// Never reached: no sandbox runs here ([`check_supported`] refuses first).
pub fn strip_rewritten(
    _roots: &[std::path::PathBuf],
    _skip: &[std::path::PathBuf],
    _since: std::time::SystemTime,
) -> super::Stripped {
    super::Stripped::default()
}

pub fn helper_main() -> Option<std::process::ExitCode> {
    None
}
