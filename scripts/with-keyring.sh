#!/bin/sh
# Runs CMD with a reachable, unlocked Secret Service on the session bus.
#
# If DBUS_SESSION_BUS_ADDRESS already leads to a Secret Service, CMD runs as is. Otherwise this
# starts a private session bus (dbus-run-session) and a gnome-keyring-daemon whose throwaway
# `login` keyring lives in a temp dir and is created unlocked, runs CMD there, and cleans up.
# The user's own keyrings are never touched. Needs dbus-run-session, dbus-send and
# gnome-keyring-daemon (Debian/Ubuntu: dbus, gnome-keyring).
#
# Usage: scripts/with-keyring.sh CMD [ARG…]    e.g. scripts/with-keyring.sh cargo test
set -eu

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARG...]" >&2
    exit 2
fi

# Prints "true" when the session bus has an owner for the Secret Service name.
secret_service_owned() {
    timeout 5 dbus-send --session --print-reply=literal --dest=org.freedesktop.DBus \
        /org/freedesktop/DBus org.freedesktop.DBus.NameHasOwner \
        string:org.freedesktop.secrets 2>/dev/null | tr -d ' '
}

if [ -z "${TILL_WITH_KEYRING_INNER:-}" ]; then
    if [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] && [ "$(secret_service_owned || true)" = "booleantrue" ]; then
        exec "$@"
    fi
    for tool in dbus-run-session dbus-send gnome-keyring-daemon; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "$0: $tool is missing (install dbus and gnome-keyring)" >&2
            exit 127
        fi
    done
    TILL_WITH_KEYRING_INNER=1 exec dbus-run-session -- "$0" "$@"
fi

# Inside the private session bus from here on.
unset TILL_WITH_KEYRING_INNER
dir=$(mktemp -d "${TMPDIR:-/tmp}/till-keyring.XXXXXX")
mkdir -m 700 "$dir/data" "$dir/run"
daemon_pid=""
cleanup() {
    if [ -n "$daemon_pid" ]; then
        kill "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --unlock reads the keyring password on stdin and creates the `login` keyring (the default
# collection) with it when there is none, so the keyring starts out unlocked. The XDG paths
# point only the daemon at the temp dir; CMD keeps the caller's environment.
printf '%s' till-test-keyring |
    XDG_DATA_HOME="$dir/data" XDG_RUNTIME_DIR="$dir/run" \
        gnome-keyring-daemon --unlock --components=secrets >/dev/null

# The daemon claims its bus name asynchronously; wait for it (at most ~10 s).
tries=0
until [ "$(secret_service_owned || true)" = "booleantrue" ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ]; then
        echo "$0: gnome-keyring-daemon did not start a Secret Service" >&2
        exit 1
    fi
    sleep 0.1
done
daemon_pid=$(timeout 5 dbus-send --session --print-reply=literal --dest=org.freedesktop.DBus \
    /org/freedesktop/DBus org.freedesktop.DBus.GetConnectionUnixProcessID \
    string:org.freedesktop.secrets 2>/dev/null | awk '{print $2}') || daemon_pid=""

status=0
"$@" || status=$?
exit "$status"
