use super::*;

#[test]
fn loopback_hosts_are_accepted() {
    for host in [
        "127.0.0.1",
        "127.0.0.1:8080",
        "127.1.2.3:1",
        "localhost",
        "LocalHost:443",
        "localhost.",
        "localhost.:65535",
        "[::1]",
        "[::1]:9000",
        "[0:0:0:0:0:0:0:1]:80",
    ] {
        assert!(is_loopback_host(host), "{host}");
    }
}

/// Regression: `127.evil.com` passed because any name starting with `127.` did, and
/// `[::1]evil` because only the part inside the brackets was looked at.
#[test]
fn names_that_only_look_like_loopback_are_refused() {
    for host in [
        "127.evil.com",
        "127.0.0.1.evil.com",
        "localhost.evil.com",
        "evil-localhost",
        "localhost..",
        "[::1]evil",
        "[::1]:80x",
        "[::1",
        "::1",
        "127.0.0.1:80@evil",
        "127.0.0.1:",
        "127.0.0.1:99999",
        "127.0.0.1:+80",
        "127.0.0.1.",
        "127.1",
        "0x7f.0.0.1",
        "10.0.0.1",
        "[::2]",
        "",
        "localhost:80:80",
    ] {
        assert!(!is_loopback_host(host), "{host}");
    }
}
