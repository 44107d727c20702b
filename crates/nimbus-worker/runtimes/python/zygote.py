"""Nimbus's Python zygote: the interpreter and bootstrap.py's imports, loaded ahead.

Started by the worker in a pre-created environment shell before any function is known
(nimbus-sandbox's zygote.rs), already isolated: its namespaces, root, cgroups, user and
seccomp filter are the function's. Its stdout and stderr are already the environment's
output. It waits on the descriptor NIMBUS_ZYGOTE_FD for one message, in the sandbox's
wire format (wire.rs): the function's working directory, argv (the interpreter, then
the bootstrap script) and environment. It takes those as its own and runs the bootstrap
as __main__, exactly as `python3 /var/runtime/bootstrap.py` would, minus the start-up
already done. The
worker only gives a function a zygote whose start-up environment (PYTHON*, LANG, TZ,
LD_*, ...) matches the function's. Standard library only.
"""

import os
import socket
import struct
import sys

# What bootstrap.py imports at start and on its first invocation, loaded now.
import gc  # noqa: F401
import http.client  # noqa: F401
import importlib  # noqa: F401
import json  # noqa: F401
import logging  # noqa: F401
import runpy
import time  # noqa: F401

MAGIC = 0x4E4D4253
HEADER = struct.Struct("<IIIQIII")
MAX_MESSAGE = 128 * 1024


def fail(message):
    sys.stderr.write(f"nimbus zygote: {message}\n")
    sys.stderr.flush()
    os._exit(127)


def receive(fd):
    sock = socket.socket(fileno=fd)
    try:
        message = sock.recv(MAX_MESSAGE)
    finally:
        sock.close()
    if not message:
        os._exit(0)  # the worker dropped this shell unused
    if len(message) < HEADER.size:
        fail("short message")
    magic, _uid, _gid, _nofile, mounts, argc, envc = HEADER.unpack_from(message)
    if magic != MAGIC or mounts != 0 or argc < 2:
        fail("not a function spec")
    strings = message[HEADER.size:].split(b"\0")
    if len(strings) < 2 + argc + envc:
        fail("truncated message")
    cwd, _program = strings[0], strings[1]
    argv = [s.decode() for s in strings[2:2 + argc]]
    env = dict(s.decode().split("=", 1) for s in strings[2 + argc:2 + argc + envc])
    return cwd.decode(), argv, env


def main():
    fd = int(os.environ.pop("NIMBUS_ZYGOTE_FD"))
    # What the interpreter set for itself at start-up (LC_CTYPE when it coerced the C
    # locale, say): a fresh start with the function's environment would set the same,
    # since its start-up variables are this zygote's. Everything else here is also in
    # the function's environment.
    started_with = dict(os.environ)
    cwd, argv, env = receive(fd)
    os.environ.clear()
    os.environ.update(env)
    for name, value in started_with.items():
        os.environ.setdefault(name, value)
    os.chdir(cwd)
    script = argv[1]
    sys.argv = argv[1:]
    sys.orig_argv = [argv[0]] + argv[1:]
    # As for `python3 script`: the script's directory first on the path.
    sys.path[0] = os.path.dirname(script)
    runpy.run_path(script, run_name="__main__")


main()
