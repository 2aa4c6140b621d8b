//! A hidden prompt on the terminal (root keys, admin keys, the file store's passphrase) that
//! gives the terminal back as it found it, however the prompt ends.
//!
//! On unix the line is read with echo turned off through termios; while it is off, SIGINT,
//! SIGTERM, SIGHUP and SIGQUIT put the saved settings back before they end the process as they
//! would have (so a shell sees 130 for Ctrl-C), and Ctrl-Z puts them back before the process
//! stops and turns echo off again when it continues. Elsewhere dialoguer's prompt is used.

use zeroize::Zeroizing;

/// Asks `label: ` on stderr and reads one line from the terminal on stdin without echoing it.
/// `Ok(None)` at end of input (Ctrl-D on an empty line); an empty line is `Ok(Some(""))`.
/// The answer has its line ending removed.
pub fn hidden_line(label: &str) -> std::io::Result<Option<Zeroizing<String>>> {
    imp::hidden_line(label)
}

#[cfg(unix)]
mod imp {
    use std::cell::UnsafeCell;
    use std::io::Write as _;
    use std::mem::MaybeUninit;
    use std::sync::atomic::{AtomicI32, Ordering};

    use zeroize::Zeroizing;

    /// The terminal settings to put back from a signal handler: written before [`SAVED_FD`]
    /// names a descriptor, read only while it does.
    struct Saved(UnsafeCell<MaybeUninit<libc::termios>>);
    // SAFETY: written by one thread while no handler can read it (SAVED_FD is -1), then only
    // read.
    unsafe impl Sync for Saved {}
    static SAVED: Saved = Saved(UnsafeCell::new(MaybeUninit::uninit()));
    /// The terminal whose settings [`SAVED`] holds, or -1.
    static SAVED_FD: AtomicI32 = AtomicI32::new(-1);

    /// The settings the prompt reads with (echo off), put back after a suspend.
    static QUIET: Saved = Saved(UnsafeCell::new(MaybeUninit::uninit()));

    const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

    /// Ctrl-Z at the prompt: the terminal is put back before the process stops (the shell
    /// would otherwise find echo off, or turn it on, and the prompt would go on echoing after
    /// `fg`), and echo is turned off again, and the prompt said again, once it continues.
    extern "C" fn suspend(_sig: libc::c_int) {
        let fd = SAVED_FD.load(Ordering::Acquire);
        if fd < 0 {
            return;
        }
        // SAFETY: tcsetattr, raise and write are async-signal-safe; SAVED and QUIET are
        // initialised while SAVED_FD is not -1.
        unsafe {
            libc::tcsetattr(fd, libc::TCSANOW, (*SAVED.0.get()).as_ptr());
            // SIGSTOP cannot be caught: the process stops here until it is continued.
            libc::raise(libc::SIGSTOP);
            libc::tcsetattr(fd, libc::TCSANOW, (*QUIET.0.get()).as_ptr());
            let again = b"\n(typing stays hidden) ";
            libc::write(libc::STDERR_FILENO, again.as_ptr().cast(), again.len());
        }
    }

    /// Puts the terminal back, then lets the signal do what it would have done: the handler
    /// is installed with `SA_RESETHAND`, so the disposition is the default again, and the
    /// signal raised here is delivered once the handler returns.
    extern "C" fn restore_and_reraise(sig: libc::c_int) {
        let fd = SAVED_FD.load(Ordering::Acquire);
        if fd >= 0 {
            // SAFETY: tcsetattr and raise are async-signal-safe; SAVED is initialised while
            // SAVED_FD is not -1.
            unsafe {
                libc::tcsetattr(fd, libc::TCSANOW, (*SAVED.0.get()).as_ptr());
            }
        }
        // SAFETY: as above.
        unsafe {
            libc::raise(sig);
        }
    }

    /// Restores the terminal and the previous signal dispositions when dropped.
    struct Guard {
        fd: libc::c_int,
        old: Vec<(libc::c_int, libc::sigaction)>,
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            SAVED_FD.store(-1, Ordering::Release);
            // SAFETY: SAVED was initialised before the guard existed; the old actions were
            // filled in by sigaction.
            unsafe {
                libc::tcsetattr(self.fd, libc::TCSAFLUSH, (*SAVED.0.get()).as_ptr());
                for (sig, old) in &self.old {
                    libc::sigaction(*sig, old, std::ptr::null_mut());
                }
            }
        }
    }

    pub fn hidden_line(label: &str) -> std::io::Result<Option<Zeroizing<String>>> {
        let fd = libc::STDIN_FILENO;
        let mut saved = MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills `saved` on success.
        if unsafe { libc::tcgetattr(fd, saved.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: tcgetattr succeeded; no handler reads SAVED while SAVED_FD is -1.
        let saved = unsafe {
            let saved = saved.assume_init();
            (*SAVED.0.get()).write(saved);
            saved
        };
        SAVED_FD.store(fd, Ordering::Release);
        let mut guard = Guard {
            fd,
            old: Vec::new(),
        };
        for sig in SIGNALS {
            // SAFETY: plain sigaction calls with zeroed structures filled in here.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                    continue;
                }
                // A signal ignored before (nohup) stays ignored.
                if old.sa_sigaction == libc::SIG_IGN {
                    continue;
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = restore_and_reraise as extern "C" fn(libc::c_int) as usize;
                new.sa_flags = libc::SA_RESETHAND;
                libc::sigemptyset(&mut new.sa_mask);
                if libc::sigaction(sig, &new, std::ptr::null_mut()) == 0 {
                    guard.old.push((sig, old));
                }
            }
        }

        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK);
        quiet.c_lflag |= libc::ICANON | libc::ECHONL;
        // SAFETY: written before the suspend handler that reads it is installed (and while
        // SAVED_FD names the terminal only ever read).
        unsafe {
            (*QUIET.0.get()).write(quiet);
        }
        // SAFETY: plain sigaction calls with zeroed structures filled in here. SA_RESTART: the
        // read goes on after the process continues.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGTSTP, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction != libc::SIG_IGN
            {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = suspend as extern "C" fn(libc::c_int) as usize;
                new.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut new.sa_mask);
                if libc::sigaction(libc::SIGTSTP, &new, std::ptr::null_mut()) == 0 {
                    guard.old.push((libc::SIGTSTP, old));
                }
            }
        }
        // SAFETY: `quiet` is a valid termios.
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error());
        }

        let mut stderr = std::io::stderr();
        let _ = write!(stderr, "{label}: ");
        let _ = stderr.flush();

        let mut line = Zeroizing::new(Vec::with_capacity(4096));
        let eof = loop {
            let mut byte = 0u8;
            // SAFETY: reads one byte into `byte`.
            let n = unsafe { libc::read(fd, (&raw mut byte).cast(), 1) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if n == 0 {
                break true;
            }
            if byte == b'\n' {
                break false;
            }
            line.push(byte);
        };
        drop(guard);
        if eof {
            // Ctrl-D echoes nothing: end the prompt's line.
            let _ = writeln!(stderr);
            if line.is_empty() {
                return Ok(None);
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let text = String::from_utf8(std::mem::take(&mut *line)).map_err(|e| {
            let mut bytes = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            std::io::Error::new(std::io::ErrorKind::InvalidData, "the answer is not UTF-8")
        })?;
        Ok(Some(Zeroizing::new(text)))
    }
}

#[cfg(not(unix))]
mod imp {
    use zeroize::Zeroizing;

    pub fn hidden_line(label: &str) -> std::io::Result<Option<Zeroizing<String>>> {
        dialoguer::Password::new()
            .with_prompt(label)
            .allow_empty_password(true)
            .interact()
            .map(|s| Some(Zeroizing::new(s)))
            .map_err(|dialoguer::Error::IO(e)| e)
    }
}
