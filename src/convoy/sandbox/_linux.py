"""The Linux kernel mechanisms the sandbox child applies to itself, through ``ctypes``.

Each function either applies its restriction or raises ``OSError``; the caller decides
whether a missing mechanism is fatal (see ``convoy.sandbox._child``). Nothing here runs
in the engine's process except :func:`landlock_abi` and :func:`can_unshare` (probes).

- namespaces (``unshare``): a network namespace (no interface but a loopback that is down),
  a PID namespace (every process of the call dies with its init) and a mount namespace
  (a ``/proc`` that shows only the call's processes);
- Landlock: file-system access limited to the temporary directory (read-write) and an
  allow-list (read-only); TCP bind/connect refused; signals and abstract Unix sockets
  scoped to the call's own processes;
- seccomp: no new namespaces (a user namespace would give the tool capabilities inside
  it), no mounts, ``bpf``, keyrings, ``io_uring``; without network, ``socket()`` fails
  with ``EACCES``; foreign-ABI system calls (i386 ``int 0x80``, x32) with ``ENOSYS``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from collections.abc import Iterable

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 1 << 18

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount_private_proc() -> None:
    """In a new mount namespace (and PID namespace): stop mounts propagating back to the
    host, and mount a ``/proc`` that shows this PID namespace only."""
    _check(_libc.mount(None, b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None),
           "mount --make-rprivate /")
    _check(_libc.mount(b"proc", b"/proc", b"proc",
                       ctypes.c_ulong(_MS_NOSUID | _MS_NODEV | _MS_NOEXEC), None), "mount /proc")


def expose(paths: Iterable[str]) -> list[str]:
    """In a new mount namespace: make ``paths`` reachable by an unprivileged user id when
    a directory above them is not (a Python installed under ``/root``, mode 0700). Each
    such directory is covered by an empty tmpfs (hiding the rest of it) into which the
    paths below it are bind-mounted. Returns the directories covered."""
    wanted = sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})
    closed: dict[str, list[str]] = {}
    for path in wanted:
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            above = "/" + "/".join(parts[:depth])
            if not os.stat(above).st_mode & 0o001:
                closed.setdefault(above, []).append(path)
                break
    for top, below in closed.items():
        fds = []
        for path in below:
            if any(path.startswith(other + "/") for other in below if other != path):
                continue  # inside another path that is mounted whole
            fds.append((path, os.open(path, os.O_PATH | os.O_CLOEXEC)))
        _check(_libc.mount(b"tmpfs", top.encode(), b"tmpfs",
                           ctypes.c_ulong(_MS_NOSUID | _MS_NODEV), b"mode=0755"),
               f"mount tmpfs on {top}")
        for path, fd in fds:
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(path, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "a").close()
            _check(_libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None,
                               ctypes.c_ulong(_MS_BIND | _MS_REC), None), f"bind {path}")
            os.close(fd)
    return sorted(closed)


def die_with_parent(sig: int) -> None:
    _check(_libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0), "PR_SET_PDEATHSIG")


def no_new_privs() -> None:
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), 0, 0, 0), "PR_SET_NO_NEW_PRIVS")


def can_unshare() -> bool:
    """May this process create namespaces? (Root with CAP_SYS_ADMIN, as in most VMs and
    privileged containers; Docker's default profile refuses it.) Probed in a child."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only exits
        try:
            unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID)
        except OSError:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


# -- Landlock ----------------------------------------------------------------------------

_SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_ABI1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0: none)."""
    ret = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                        ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))
    return max(int(ret), 0)


def _handled_fs(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def landlock(*, read: Iterable[str], write: Iterable[str], network: bool) -> int:
    """Restrict this process (and everything it starts) for good: read ``read`` and
    ``write``, write only ``write``; with ``network=False`` no TCP bind or connect (ABI 4);
    no signals to, or abstract sockets of, processes outside (ABI 6). Returns the ABI."""
    abi = landlock_abi()
    if abi < 1:
        raise OSError(errno.ENOSYS, "Landlock is not available in this kernel")
    fs = _handled_fs(abi)
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 and not network else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("=QQQ", fs, net, scoped)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _check(_libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, buf,
                                   ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)),
                     "landlock_create_ruleset")
    try:
        readable = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
        for paths, rights in ((read, readable), (write, fs)):
            for path in paths:
                _allow(ruleset, path, rights & fs)
        no_new_privs()
        _check(_libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset),
                             ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _allow(ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path that does not exist grants nothing
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
        _check(_libc.syscall(_SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset),
                             ctypes.c_int(_RULE_PATH_BENEATH), rule, ctypes.c_uint32(0)),
               f"landlock_add_rule {path!r}")
    finally:
        os.close(fd)


# -- seccomp -----------------------------------------------------------------------------

# Per machine: audit arch, lowest x32 number (or None), and system call numbers.
_ARCH: dict[str, tuple[int, int | None, dict[str, int]]] = {
    "x86_64": (0xC000003E, 0x40000000, {
        "socket": 41, "clone": 56, "clone3": 435, "io_uring_setup": 425, "unshare": 272,
        "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "bpf": 321,
        "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249,
        "userfaultfd": 323}),
    "aarch64": (0xC00000B7, None, {
        "socket": 198, "clone": 220, "clone3": 435, "io_uring_setup": 425, "unshare": 97,
        "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41, "bpf": 280,
        "perf_event_open": 241, "keyctl": 219, "add_key": 217, "request_key": 218,
        "userfaultfd": 282}),
}
#: refused with EPERM: new namespaces (a user namespace gives capabilities inside it, and
#: kernel attack surface), mounts, and interfaces a tool has no business with
_DENIED = ("unshare", "setns", "mount", "umount2", "pivot_root", "bpf", "perf_event_open",
           "keyctl", "add_key", "request_key", "userfaultfd")
_CLONE_NEW = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
              | 0x40000000 | 0x00000080)  # CLONE_NEWNS .. CLONE_NEWNET, CLONE_NEWTIME
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_available() -> bool:
    return platform.machine() in _ARCH


def seccomp_filter(*, network: bool) -> None:
    """A seccomp filter, for good: no new namespaces (``unshare``, ``setns``, ``clone``
    with a ``CLONE_NEW*`` flag; ``clone3`` says ENOSYS so libc falls back to ``clone``),
    no mounts, ``bpf``, ``perf_event_open``, keyrings or ``userfaultfd`` (EPERM), no
    ``io_uring`` (EACCES); without ``network``, ``socket()`` of every family (EACCES;
    ``socketpair`` stays). System calls of another ABI (i386 ``int 0x80``, x32): ENOSYS."""
    machine = platform.machine()
    if machine not in _ARCH:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {machine!r}")
    arch, x32, nr = _ARCH[machine]
    enosys, eperm = _RET_ERRNO | errno.ENOSYS, _RET_ERRNO | errno.EPERM
    eacces = _RET_ERRNO | errno.EACCES
    prog = [_insn(_LD_W_ABS, 4), _insn(_JEQ_K, arch, jt=1), _insn(_RET_K, enosys),
            _insn(_LD_W_ABS, 0)]  # seccomp_data.arch, then .nr
    if x32 is not None:
        prog += [_insn(_JGE_K, x32, jf=1), _insn(_RET_K, enosys)]
    rules = [("clone3", enosys), ("io_uring_setup", eacces), *((n, eperm) for n in _DENIED)]
    if not network:
        rules.append(("socket", eacces))
    for name, ret in rules:
        prog += [_insn(_JEQ_K, nr[name], jf=1), _insn(_RET_K, ret)]
    prog += [_insn(_JEQ_K, nr["clone"], jf=3), _insn(_LD_W_ABS, 16),  # clone's flags
             _insn(_JSET_K, _CLONE_NEW, jf=1), _insn(_RET_K, eperm), _insn(_RET_K, _RET_ALLOW)]
    code = b"".join(prog)
    filt = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(filt))
    fbuf = ctypes.create_string_buffer(fprog, len(fprog))
    no_new_privs()
    _check(_libc.prctl(_PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER), fbuf, 0, 0),
           "seccomp")
