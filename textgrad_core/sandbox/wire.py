"""The wire between a judge and the program it judges, each in its own sandbox child.

A checked run (see ``checked.py``) puts the program under test in one child ("serve" mode)
and the trusted check in another ("call" mode); the two share only a socket.  Over it, the
judge calls the program's functions with plain values and gets plain values back:
``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, ``complex``, and lists, tuples,
dicts, sets and frozensets of them, each sent with its exact type.  Whatever the program
does - return an object whose ``__eq__`` is always true, patch builtins or this very code,
walk frames, exit with status 0, raise ``SystemExit`` - only bytes reach the judge, which
rebuilds plain builtin values from them or refuses; the verdict is the judge's return value,
written by a process in which no code of the program ever ran.

Frames: 4-byte big-endian length, then JSON.  This file is sent as source inside the run's
config and executed by the runner before the guard; standard library only; the parent
never imports it.
"""

import json
import os

MAX_FRAME = 16 * 1024 * 1024
TAGS = ("I", "F", "T", "D", "S", "Z", "B", "C")


class Unrepresentable(TypeError):
    """A value that is not made of plain builtin types only."""


class CandidateError(Exception):
    """The program under test raised (or sent an error for) a call: type name, message, frames."""

    def __init__(self, type_name, message, frames=()):
        super().__init__(type_name, message)
        self.type_name, self.message, self.frames = str(type_name), str(message), list(frames)

    def describe(self):
        """``Type: message`` as a traceback's last line would say it."""
        return self.type_name + (": " + self.message if self.message else "")


class CandidateGone(Exception):
    """The program under test exited, crashed or broke the protocol instead of answering."""


def encode(x, depth=0):
    """A JSON-ready form of a plain value, exact types only (``Unrepresentable`` otherwise)."""
    t = type(x)
    if depth > 200:
        raise Unrepresentable("a value nested more than 200 levels deep")
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if -(1 << 53) < x < (1 << 53) else {"I": str(x)}
    if t is float:
        return x if x == x and x not in (float("inf"), float("-inf")) else {"F": repr(x)}
    if t is list:
        return [encode(v, depth + 1) for v in x]
    if t is tuple:
        return {"T": [encode(v, depth + 1) for v in x]}
    if t is dict:
        return {"D": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
    if t is set or t is frozenset:
        return {"S" if t is set else "Z": [encode(v, depth + 1) for v in x]}
    if t is bytes:
        return {"B": x.hex()}
    if t is complex:
        return {"C": [encode(x.real), encode(x.imag)]}
    raise Unrepresentable("a value of type %s, which is not a plain builtin value" % (t.__name__,))


def decode(x, depth=0):
    """The plain value a JSON form stands for; ValueError for anything else."""
    t = type(x)
    if depth > 200:
        raise ValueError("nested too deeply")
    if x is None or t in (bool, str, int, float):
        return x
    if t is list:
        return [decode(v, depth + 1) for v in x]
    if t is not dict or len(x) != 1:
        raise ValueError("not a plain value")
    (tag, body), = x.items()
    if tag == "I" and type(body) is str:
        return int(body)
    if tag == "F" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "B" and type(body) is str:
        return bytes.fromhex(body)
    if type(body) is not list:
        raise ValueError("not a plain value")
    items = [decode(v, depth + 1) for v in body]
    if tag == "T":
        return tuple(items)
    if tag == "S":
        return set(items)
    if tag == "Z":
        return frozenset(items)
    if tag == "C" and len(items) == 2 and all(type(v) in (int, float) for v in items):
        return complex(items[0], items[1])
    if tag == "D" and all(type(p) is list and len(p) == 2 for p in items):
        return dict((k, v) for k, v in items)
    raise ValueError("not a plain value")


def send(fd, obj):
    """Write one frame (raises OSError when the other side is gone)."""
    data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
    view = memoryview(len(data).to_bytes(4, "big") + data)
    while view:
        view = view[os.write(fd, view):]


def recv(fd):
    """Read one frame; None at end of stream; ValueError for a malformed or oversized one."""
    head = read_exactly(fd, 4)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > MAX_FRAME:
        raise ValueError("a frame of %d bytes (the limit is %d)" % (size, MAX_FRAME))
    body = read_exactly(fd, size)
    if body is None:
        raise ValueError("a truncated frame")
    return json.loads(body.decode("utf-8"))


def read_exactly(fd, n):
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            if got:
                raise ValueError("a truncated frame")
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def frames_of(exc, filename):
    """[[lineno, function], ...] of the traceback's frames in ``filename``."""
    import traceback
    try:
        return [[f.lineno, f.name] for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    except BaseException:
        return []


def describe_exception(exc):
    try:
        return type(exc).__name__, str(exc)
    except BaseException:
        return "exception", ""


def serve(fd, ns, load_error, filename):
    """Candidate side: report how the program loaded, then answer calls until the judge hangs up."""
    if load_error is not None:
        kind, exc = load_error
        name, message = describe_exception(exc)
        send(fd, {"load_error": name + (": " + message if message else ""), "kind": kind,
                  "lineno": getattr(exc, "lineno", None) if kind == "compile" else None,
                  "frames": frames_of(exc, filename)})
        return
    send(fd, {"loaded": True})
    while True:
        req = recv(fd)
        if req is None:
            return
        fn = ns.get(req.get("call"))
        try:
            if fn is None or not callable(fn):
                raise NameError("the program defines no function %r" % (req.get("call"),))
            args = decode(req.get("args") or [])
            kwargs = decode(req.get("kwargs") or {"D": []})
            reply = {"value": encode(fn(*args, **kwargs))}
        except BaseException as exc:  # SystemExit, KeyboardInterrupt...: the call failed
            name, message = describe_exception(exc)
            reply = {"raised": name, "message": message[:2000], "frames": frames_of(exc, filename)}
        try:
            send(fd, reply)
        except ValueError:
            send(fd, {"raised": "ValueError", "message": "the return value cannot be sent", "frames": []})


class Peer:
    """Judge side: the program under test, reached only through the socket."""

    CandidateError = CandidateError
    CandidateGone = CandidateGone

    def __init__(self, fd):
        self.fd = fd
        self.loaded = None

    def load(self):
        """How the program loaded: ``{"loaded": True}`` or its load error (kind, lineno, frames)."""
        if self.loaded is None:
            try:
                msg = recv(self.fd)
            except (OSError, ValueError) as e:
                raise CandidateGone("the program under test broke the protocol: %s" % (e,)) from None
            if type(msg) is not dict or ("loaded" not in msg and "load_error" not in msg):
                raise CandidateGone("the program under test exited or crashed before it was loaded")
            self.loaded = msg
        return self.loaded

    def function(self, name):
        """A callable that calls the program's function ``name`` with plain values."""
        def call(*args, **kwargs):
            if not self.load().get("loaded"):
                raise CandidateGone("the program under test did not load")
            try:
                send(self.fd, {"call": name, "args": encode(list(args)), "kwargs": encode(dict(kwargs))})
                reply = recv(self.fd)
            except OSError:
                reply = None
            except ValueError as e:
                raise CandidateGone("the program under test broke the protocol: %s" % (e,)) from None
            if type(reply) is not dict:
                raise CandidateGone("the program under test exited or crashed instead of returning from %s()"
                                    % (name,))
            if "value" in reply:
                try:
                    return decode(reply["value"])
                except Exception as e:  # malformed, too deep, unhashable keys...
                    raise CandidateGone("%s() returned something that is not a plain value (%s)"
                                        % (name, e)) from None
            frames = reply.get("frames")
            frames = [f for f in frames if type(f) is list and len(f) == 2] if type(frames) is list else []
            raise CandidateError(str(reply.get("raised", "exception"))[:200],
                                 str(reply.get("message", ""))[:2000], frames)
        call.__name__ = call.__qualname__ = str(name)
        return call
