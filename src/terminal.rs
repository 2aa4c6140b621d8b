//! The controlling terminal as a run began, put right once its agent has ended: an agent can
//! stop the terminal's output (`TCOOFF`: till would hang at its next line), leave an escape
//! sequence open (which swallows till's summary), turn on concealed text, take the foreground
//! or change the settings. Unix only.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// The controlling terminal's foreground process group and settings when the run began.
pub struct Terminal {
    tty: OwnedFd,
    foreground: libc::pid_t,
    settings: libc::termios,
}

/// What [`Terminal::reset_output`] writes: CAN ends any sequence and ST any string (DCS, OSC);
/// then reverse video off, line wrap on, the cursor shown, ASCII as the character set in G0
/// and G0 shifted in, and SGR 0 for the colours. Nothing here moves the cursor or forgets that
/// a full line waits to wrap (a scroll region is left: ending one moves the cursor home, and
/// saving the cursor around that loses a pending wrap in tmux, so till's first letter landed
/// on the agent's last column). Colours the terminal was told to use (OSC 4, 10, 11) are
/// left: a theme of yours sets them the same way.
pub const RESET: &[u8] = b"\x18\x1b\\\x1b[?5l\x1b[?7h\x1b[?25h\x1b(B\x0f\x1b[0m";

impl Terminal {
    /// `None` without a controlling terminal.
    pub fn save() -> Option<Self> {
        // SAFETY: open reads a NUL-terminated path; the descriptor it returns is owned here.
        let tty = unsafe {
            let fd = libc::open(
                c"/dev/tty".as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return None;
            }
            OwnedFd::from_raw_fd(fd)
        };
        // SAFETY: tcgetpgrp takes an fd; tcgetattr writes one termios, which outlives the call.
        unsafe {
            let foreground = libc::tcgetpgrp(tty.as_raw_fd());
            let mut settings = std::mem::zeroed::<libc::termios>();
            (foreground > 0 && libc::tcgetattr(tty.as_raw_fd(), &mut settings) == 0).then_some(
                Self {
                    tty,
                    foreground,
                    settings,
                },
            )
        }
    }

    /// Whether till's process group is the terminal's foreground now: touching the terminal
    /// from the background would stop till (SIGTTOU) unless it ignores that signal.
    pub fn is_foreground(&self) -> bool {
        // SAFETY: tcgetpgrp takes an fd, getpgrp nothing.
        unsafe { libc::tcgetpgrp(self.tty.as_raw_fd()) == libc::getpgrp() }
    }

    /// Starts the terminal's output again, ends exclusive mode, and ends an escape sequence
    /// the agent left open and what it left on that would hide or garble what till writes
    /// next: reverse video, no line wrap, a hidden cursor, a line-drawing character set,
    /// colours and concealed text ([`RESET`]).
    pub fn reset_output(&self) {
        let fd = self.tty.as_raw_fd();
        // SAFETY: tcflow and the ioctl take integers; write reads the bytes, which outlive it.
        unsafe {
            libc::tcflow(fd, libc::TCOON);
            libc::ioctl(fd, libc::TIOCNXCL);
            libc::write(fd, RESET.as_ptr().cast(), RESET.len());
        }
    }

    /// [`Self::reset_output`], then, when till was the terminal's foreground job as the run
    /// began: takes the foreground back from what the agent left it to, and puts the settings
    /// back (a `tostop`, echo turned off). For a till that ignores SIGTTOU and SIGTTIN.
    pub fn restore(&self) {
        self.reset_output();
        let fd = self.tty.as_raw_fd();
        // SAFETY: getpgrp has no preconditions.
        let me = unsafe { libc::getpgrp() };
        if self.foreground != me {
            return;
        }
        // SAFETY: tcgetpgrp and tcsetpgrp take integers (the caller ignores SIGTTOU);
        // tcsetattr reads one termios, which outlives the call.
        unsafe {
            if libc::tcgetpgrp(fd) != me {
                libc::tcsetpgrp(fd, me);
            }
            libc::tcsetattr(fd, libc::TCSANOW, &self.settings);
        }
    }
}

/// Whether till's standard streams (0, 1, 2) were non-blocking as a run began. The agent
/// shares their open files with till and with your shell: one it leaves non-blocking (Node
/// does, and leaves it so when it is killed) makes the shell's next read, or the program after
/// it, fail with `EAGAIN`. Not only for a terminal: a pipe or a file is shared the same way.
pub struct StreamFlags([Option<bool>; 3]);

impl StreamFlags {
    pub fn save() -> Self {
        Self([0, 1, 2].map(|fd| {
            // SAFETY: fcntl(F_GETFL) takes an integer and reads nothing else.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            (flags >= 0).then_some(flags & libc::O_NONBLOCK != 0)
        }))
    }

    /// Puts each stream's non-blocking flag back as it was; the other flags stay.
    pub fn restore(&self) {
        for (fd, was) in (0..).zip(self.0) {
            let Some(was) = was else { continue };
            // SAFETY: fcntl(F_GETFL/F_SETFL) takes integers and reads nothing else.
            unsafe {
                let now = libc::fcntl(fd, libc::F_GETFL);
                if now >= 0 && (now & libc::O_NONBLOCK != 0) != was {
                    libc::fcntl(fd, libc::F_SETFL, now ^ libc::O_NONBLOCK);
                }
            }
        }
    }
}
