"""The env-worker <-> generator request socket: replies by id, errors, lost connections, auth."""

import asyncio
import threading
import time
from multiprocessing import AuthenticationError

import numpy as np
import pytest

from rlvla3.core.types import ActionRequest, ObsBatch
from rlvla3.workers.action_channel import ActionClient, ActionServer, Answer


class Req:
    def __init__(self, rid):
        self.request_id = rid


class Replies:
    def __init__(self):
        self.got = {}
        self.lock = threading.Lock()

    def cb(self, rid):
        def f(answer):
            with self.lock:
                assert rid not in self.got, "a request answered twice"
                assert answer.request_id == rid
                ok = answer.error is None
                self.got[rid] = (ok, answer.reply if ok else answer.error)
        return f

    def wait(self, n, timeout=10.0):
        deadline = time.time() + timeout
        while len(self.got) < n and time.time() < deadline:
            time.sleep(0.005)
        return len(self.got)


def _echo_server(delay_s=0.0, fail_ids=()):
    """Answers each request from its own thread (out of order), or fails the ids asked."""
    def submit(reqs, reply):
        for r in reqs:
            def answer(r=r):
                time.sleep(delay_s * (r.request_id % 3))
                if r.request_id in fail_ids:
                    reply(Answer(r.request_id, error=ValueError(f"bad {r.request_id}")))
                else:
                    reply(Answer(r.request_id, reply=("reply", r.request_id)))
            threading.Thread(target=answer).start()
    return ActionServer(submit, host="127.0.0.1")


def test_every_request_gets_its_own_reply_from_several_threads():
    server = _echo_server(delay_s=0.002)
    client = ActionClient(server.address)
    rep = Replies()

    def sender(base):
        for k in range(0, 40, 4):
            ids = [base + k + j for j in range(4)]
            client.submit([Req(i) for i in ids], [rep.cb(i) for i in ids])

    threads = [threading.Thread(target=sender, args=(1000 * t,)) for t in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert rep.wait(120) == 120
    assert all(ok and payload == ("reply", rid) for rid, (ok, payload) in rep.got.items())
    assert not client.pending
    client.close()
    server.close()


def test_a_failed_request_reports_its_error_and_the_others_still_succeed():
    server = _echo_server(fail_ids={2})
    client = ActionClient(server.address)
    rep = Replies()
    client.submit([Req(i) for i in range(4)], [rep.cb(i) for i in range(4)])
    assert rep.wait(4) == 4
    ok, err = rep.got[2]
    assert not ok and isinstance(err, RuntimeError) and "bad 2" in str(err)
    assert all(rep.got[i][0] for i in (0, 1, 3))
    client.close()
    server.close()


def test_a_server_that_goes_away_fails_what_waits_and_what_comes_next():
    never = []
    server = ActionServer(lambda reqs, reply: never.extend(reqs), host="127.0.0.1")  # never answers
    client = ActionClient(server.address)
    rep = Replies()
    client.submit([Req(1), Req(2)], [rep.cb(1), rep.cb(2)])
    deadline = time.time() + 5
    while len(never) < 2 and time.time() < deadline:
        time.sleep(0.005)
    server.close()  # its connections are cut, as when the generator's process dies
    assert rep.wait(2) == 2
    assert all(not ok and isinstance(e, ConnectionError) for ok, e in rep.got.values())
    client.submit([Req(3)], [rep.cb(3)])  # after the loss: fails at once, never hangs
    assert rep.wait(3) == 3 and not rep.got[3][0]


def test_a_client_with_the_wrong_key_is_refused():
    server = _echo_server()
    (host, port), _ = server.address
    with pytest.raises(AuthenticationError):
        ActionClient(((host, port), b"not the key"))
    server.close()


def test_the_async_generator_serves_socket_requests_through_its_batcher():
    from rlvla3.runtime.config import load_config
    from rlvla3.workers.async_generator import AsyncGenerator

    cfg = load_config(["preset=tiny-test"])
    rep = Replies()

    def request(i):
        obs = ObsBatch(np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, 4), np.float32), ["reach the red block"])
        return ActionRequest(i, 0, i, obs)

    async def go():
        gen = AsyncGenerator(0, cfg.policy, 0, 1, max_batch=4, max_wait_ms=1000.0)
        address = await gen.channel_address()
        client = ActionClient(address)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: client.submit([request(i) for i in range(8)], [rep.cb(i) for i in range(8)]))
        deadline = time.time() + 20
        while len(rep.got) < 8 and time.time() < deadline:
            await asyncio.sleep(0.01)
        client.close()
        return await gen.stats()

    stats = asyncio.run(go())
    assert len(rep.got) == 8 and all(ok for ok, _ in rep.got.values())
    assert all(reply.request_id == rid and reply.batch_size == 4 for rid, (_, reply) in rep.got.items())
    assert stats["batches"] == 2 and stats["fired_by_size"] == 2  # the socket's requests shared batches


def test_many_env_workers_connect_at_once_and_none_hangs():
    """Issue 22: 12 env workers connecting to one generator at the same time left some of
    them blocked forever in the handshake (a listen backlog of 1 dropped their ACK; the
    client believed it was connected and waited for a challenge that never came)."""
    server = _echo_server()
    n, done, errors = 32, [], []

    def connect(i):
        try:
            c = ActionClient(server.address)
            rep = Replies()
            c.submit([Req(i)], [rep.cb(i)])
            if rep.wait(1, timeout=10) == 1:
                done.append(i)
            c.close()
        except Exception as e:  # a connection that fails must fail loudly, never hang
            errors.append(repr(e))

    threads = [threading.Thread(target=connect, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.time()))
    assert not errors, errors
    assert len(done) == n, f"{n - len(done)} of {n} clients still hanging after 30 s"
    server.close()


def test_connecting_to_a_silent_listener_fails_within_its_deadline():
    """A server that accepts but never authenticates (a wedged generator) cannot hold an
    env worker forever: the connection attempt raises within its deadline."""
    import socket

    silent = socket.create_server(("127.0.0.1", 0), backlog=8)  # never calls accept()
    t0 = time.time()
    with pytest.raises(TimeoutError, match="generator"):
        ActionClient((silent.getsockname()[:2], b"k" * 16), timeout_s=1.5)
    assert time.time() - t0 < 6
    silent.close()
