import json
import multiprocessing as mp
import os
import signal
import time

from kanbench.suite.claims import Claims


def test_a_held_claim_is_refused_until_released(tmp_path):
    a, b = Claims(tmp_path, "g"), Claims(tmp_path, "g")
    try:
        assert a.acquire("cell") and a.acquire("cell")              # re-entrant for its owner
        assert not b.acquire("cell")
        owner = json.loads(a.path("cell").read_text())
        assert owner["pid"] == os.getpid() and owner["heartbeat"] <= time.time()
        a.release("cell")
        assert not a.path("cell").exists()
        assert b.acquire("cell") and not a.acquire("cell")
    finally:
        a.close()
        b.close()


def hold_then_wait(results, claimed):
    Claims(results, "g").acquire("cell")
    claimed.set()
    time.sleep(60)


def test_the_claim_of_a_killed_driver_is_free_at_once(tmp_path):
    ctx = mp.get_context("spawn")
    claimed = ctx.Event()
    holder = ctx.Process(target=hold_then_wait, args=(tmp_path, claimed))
    holder.start()
    assert claimed.wait(60)
    claims = Claims(tmp_path, "g")
    try:
        assert not claims.acquire("cell")
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
        assert claims.path("cell").exists()                         # left behind, but unlocked
        assert claims.acquire("cell")
    finally:
        claims.close()


def test_a_claim_of_another_host_holds_until_its_heartbeat_is_stale(tmp_path):
    claims = Claims(tmp_path, "g", ttl=30)
    try:
        for cell, age, free in (("fresh", 5, False), ("stale", 60, True)):
            claims.path(cell).write_text(json.dumps(
                {"host": "node-elsewhere", "pid": 1, "heartbeat": time.time() - age}))
            assert claims.acquire(cell) == free, cell
        claims.path("torn").write_text('{"host": "node-else')      # its owner died mid-write
        assert claims.acquire("torn")
    finally:
        claims.close()


def test_the_heartbeat_is_renewed_while_held(tmp_path):
    claims = Claims(tmp_path, "g", heartbeat=0.05)
    try:
        claims.acquire("cell")
        first = json.loads(claims.path("cell").read_text())["heartbeat"]
        time.sleep(0.3)
        assert json.loads(claims.path("cell").read_text())["heartbeat"] > first
    finally:
        claims.close()
