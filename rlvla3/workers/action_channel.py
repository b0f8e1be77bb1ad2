"""A direct socket between env workers and a generator for action requests
(`generator.request_transport=socket`).

A Ray actor call costs about 1 ms of CPU on each side (measured on the 2-core machine:
0.92 ms in the caller, 1.06 ms in the actor, against 0.13 / 0.12 ms for the same message over
a `multiprocessing.connection` socket). An async rollout makes one request per decision of
every env slot, so on a machine with few cores the calls themselves take the CPU the trainer
needs. Here each env worker keeps one authenticated connection per generator:

- the client (env worker) sends lists of `ActionRequest`s and gets each reply back, by
  request id, on its reader thread, which runs the slot's callback;
- the server (generator) reads requests on a thread per connection, hands them to the
  generator's event loop (its dynamic batcher), and a writer thread sends the replies, several
  per message when they pile up, so the serving loop never blocks on a socket.

A generator that dies closes its connections: every request still waiting gets a
`ConnectionError`, as a failed Ray call would, and the supervisor replaces the generator.
Control calls (weights, stats, pings) stay on Ray.

Connecting has deadlines (issue 22). `multiprocessing.connection.Listener` listens with a
backlog of 1 and authenticates each client on its accept thread; when a dozen env workers
connected at once, the kernel dropped the handshake ACKs that overflowed the queue, and the
clients, which believed they were connected, waited forever for a challenge (measured
here: 19 of 32 simultaneous clients still blocked after 30 s). So the server listens with a
deep backlog and authenticates each connection on its own thread, and both sides bound the
connect and the handshake with a socket timeout; the client retries until its deadline and
then raises `TimeoutError`.
"""

from __future__ import annotations

import os
import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from typing import Callable, Dict, List, Optional, Tuple

from rlvla3.core.types import ActionReply


@dataclass
class Answer:
    """What one action request got back: its reply, or the error that stands for it."""

    request_id: int
    reply: Optional[ActionReply] = None
    error: Optional[BaseException] = None


Callback = Callable[[Answer], None]

BACKLOG = 1024  # pending connections the kernel queues: every env worker of a large run at once
HANDSHAKE_TIMEOUT_S = 10.0  # one connect + authentication attempt
CONNECT_TIMEOUT_S = 60.0  # all attempts of one client together


def _io_timeout(sock: socket.socket, seconds: float) -> None:
    """Kernel-level send/receive timeout on a blocking socket (0 = none): a read that waits
    longer fails with an OSError, also after the fd is handed to a `Connection`."""
    tv = struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def _authenticated(sock: socket.socket, authkey: bytes, server: bool, timeout_s: float) -> Connection:
    """Run the handshake on `sock` within `timeout_s`; returns a blocking `Connection` with no
    timeout (replies may be minutes apart), or raises (and closes the socket)."""
    sock.settimeout(None)
    # Request/reply traffic: no Nagle delay on a message's tail (large observations go out as a
    # header write then a payload write).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _io_timeout(sock, timeout_s)
    conn = Connection(sock.detach())
    try:
        if server:
            deliver_challenge(conn, authkey)
            answer_challenge(conn, authkey)
        else:
            answer_challenge(conn, authkey)
            deliver_challenge(conn, authkey)
        with socket.fromfd(conn.fileno(), socket.AF_INET, socket.SOCK_STREAM) as dup:  # same socket, own fd
            _io_timeout(dup, 0)
    except BaseException:
        conn.close()
        raise
    return conn


def node_host() -> str:
    """The address this node's Ray workers reach each other on; localhost without Ray."""
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except Exception:
        pass
    return "127.0.0.1"


class ActionServer:
    """Accepts env-worker connections for one generator. `submit(requests, reply)` is called
    on the reader threads; it must hand the requests over and call `reply(Answer(...))` once
    per request, from any thread."""

    def __init__(self, submit: Callable[[list, Callable], None], host: Optional[str] = None):
        self.authkey = os.urandom(16)
        host = host or node_host()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, 0), family=family, backlog=BACKLOG)
        self.submit = submit
        self.closed = False
        self.open_conns: list = []  # live connections, cut by close()
        threading.Thread(target=self._accept, daemon=True, name="action-accept").start()

    @property
    def address(self) -> Tuple[Tuple[str, int], bytes]:
        return tuple(self.listener.getsockname()[:2]), self.authkey

    def _accept(self) -> None:
        while not self.closed:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                if self.closed:
                    return
                time.sleep(0.01)  # e.g. out of file descriptors: do not spin
                continue
            # authenticated on its own thread: a slow or silent client never delays the others
            threading.Thread(target=self._handshake, args=(sock,), daemon=True, name="action-auth").start()

    def _handshake(self, sock: socket.socket) -> None:
        try:
            conn = _authenticated(sock, self.authkey, server=True, timeout_s=HANDSHAKE_TIMEOUT_S)
        except Exception:  # wrong key, or a client that went silent: it never gets a connection
            return
        if self.closed:
            conn.close()
            return
        self.open_conns.append(conn)
        outbox: "queue.SimpleQueue" = queue.SimpleQueue()
        threading.Thread(target=self._read, args=(conn, outbox), daemon=True, name="action-read").start()
        threading.Thread(target=self._write, args=(conn, outbox), daemon=True, name="action-write").start()

    def _read(self, conn, outbox) -> None:
        try:
            while True:
                self.submit(conn.recv(), outbox.put)
        except (EOFError, OSError):
            pass  # the env worker went away (or restarted); its replies have nowhere to go
        finally:
            outbox.put(None)

    def _write(self, conn, outbox) -> None:
        try:
            while True:
                first = outbox.get()
                if first is None:
                    break
                msgs = [first]
                while True:  # replies that finished together go out in one message
                    try:
                        nxt = outbox.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        conn.send([_picklable(m) for m in _stamped(msgs)])
                        return
                    msgs.append(nxt)
                conn.send([_picklable(m) for m in _stamped(msgs)])
        except (EOFError, OSError):
            pass
        finally:
            conn.close()
            self.open_conns.remove(conn)  # env workers that restart open new ones: keep the list bounded

    def close(self) -> None:
        """Stop accepting and cut every connection (its clients fail what they wait for)."""
        self.closed = True
        try:  # wakes the accept thread
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for conn in list(self.open_conns):
            try:  # shutdown, not close: it wakes the threads blocked on the socket, on both ends
                socket.fromfd(conn.fileno(), socket.AF_INET, socket.SOCK_STREAM).shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _stamped(answers: List[Answer]) -> List[Answer]:
    """Benchmark timelines: when the writer thread sent each traced reply (`ActionReply.timing`)."""
    t = time.time()
    for a in answers:
        timing = getattr(a.reply, "timing", None)
        if timing is not None:
            timing["written"] = t
    return answers


def _picklable(answer: Answer) -> Answer:
    if answer.error is None:
        return answer
    return Answer(answer.request_id, error=RuntimeError(f"generator request failed: {answer.error!r}"))  # as text


def connect(address: Tuple[Tuple[str, int], bytes], timeout_s: float = CONNECT_TIMEOUT_S) -> Connection:
    """An authenticated connection to a generator's `ActionServer`, tried until `timeout_s`
    has passed; then `TimeoutError`. A wrong key fails at once (`AuthenticationError`)."""
    from multiprocessing import AuthenticationError

    (host, port), authkey = address
    deadline = time.monotonic() + timeout_s
    last: Optional[BaseException] = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no connection to the generator at {host}:{port} within {timeout_s:.0f} s "
                               f"(last error: {last!r})")
        attempt = min(HANDSHAKE_TIMEOUT_S, left)
        try:
            sock = socket.create_connection((host, int(port)), timeout=attempt)
            return _authenticated(sock, authkey, server=False, timeout_s=attempt)
        except AuthenticationError:
            raise
        except OSError as e:  # refused, reset, or the handshake timed out: try again
            last = e
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


class ActionClient:
    """An env worker's connection to one generator."""

    def __init__(self, address: Tuple[Tuple[str, int], bytes], timeout_s: float = CONNECT_TIMEOUT_S):
        self.conn = connect(address, timeout_s)
        self.pending: Dict[int, Callback] = {}
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.broken: Optional[BaseException] = None
        self.reader = threading.Thread(target=self._read, daemon=True, name="action-replies")
        self.reader.start()

    def submit(self, requests: List, callbacks: List[Callback]) -> None:
        """Send these requests in one message; callback k gets request k's reply (or error)."""
        with self.lock:
            registered = self.broken is None
            if registered:
                for r, cb in zip(requests, callbacks):
                    self.pending[r.request_id] = cb
        if not registered:  # (once registered, a failure reaches the callbacks through _fail_all)
            for r, cb in zip(requests, callbacks):
                cb(Answer(r.request_id, error=ConnectionError(f"generator connection lost: {self.broken!r}")))
            return
        try:
            with self.send_lock:
                self.conn.send(list(requests))
        except (OSError, EOFError, ValueError) as e:
            self._fail_all(e)

    def _read(self) -> None:
        try:
            while True:
                for answer in self.conn.recv():
                    with self.lock:
                        cb = self.pending.pop(answer.request_id, None)
                    if cb is not None:
                        cb(answer)
        except (EOFError, OSError) as e:
            self._fail_all(e)

    def _fail_all(self, e: BaseException) -> None:
        with self.lock:
            if self.broken is None:
                self.broken = e
            waiting, self.pending = list(self.pending.items()), {}
        for rid, cb in waiting:
            cb(Answer(rid, error=ConnectionError(f"generator connection lost: {e!r}")))

    def close(self, timeout_s: float = 5.0) -> None:
        # Shut down, let the reader see EOF and leave, and only then close the fd: closed under a
        # live reader, its number can be reused at once by another connection of this process,
        # whose bytes the reader would then steal (seen: another client's handshake failing with
        # 'digest sent was rejected' while 32 connected at once).
        try:
            with socket.fromfd(self.conn.fileno(), socket.AF_INET, socket.SOCK_STREAM) as dup:
                dup.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError):  # already closed
            pass
        if self.reader is not threading.current_thread():
            self.reader.join(timeout=timeout_s)
        try:
            self.conn.close()
        except OSError:
            pass
        self._fail_all(ConnectionError("closed"))
