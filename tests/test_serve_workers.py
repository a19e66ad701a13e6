"""``http --workers N``: processes forked after the model is loaded answer on one port, each request as one
process alone would; a dead worker stops the service; ``/advance`` is refused with several workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from recbole_tasrec.harness.random_model import random_recommender
from recbole_tasrec.serve.cli import main
from recbole_tasrec.serve.ranking import Ranker
from tests.test_serve_http import SMALL, call

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def workers_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture()
def two_workers(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen, Ranker, Path]]:
    recommender = random_recommender(60, days=3, sessions_per_day=40, **SMALL)
    model_dir = recommender.save(tmp_path / "model")
    port = free_port()
    command = [sys.executable, "-m", "recbole_tasrec.serve", "http", "--model", str(model_dir), "--workers", "2"]
    service = subprocess.Popen([*command, "--port", str(port)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            if len(workers_of(service.pid)) == 2 and call(port, "GET", "/health")[0] == 200:
                break
        except OSError:
            pass
        assert service.poll() is None and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.2)
    try:
        yield port, service, Ranker(recommender), model_dir
    finally:
        if service.poll() is None:
            service.terminate()
        service.wait(timeout=30)


@pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc").exists(), reason="workers are forked (Linux)")
def test_workers_answer_like_one_process(two_workers) -> None:
    port, _, ranker, _ = two_workers
    sessions = [[[f"item{1 + (7 * n + j) % 59}" for j in range(1 + n % 4)]] for n in range(40)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda s: call(port, "POST", "/recommend", {"sessions": s, "k": 5}), sessions))
    assert [status for status, _ in answers] == [200] * len(sessions)
    assert [a["results"][0]["items"] for _, a in answers] == [ranker.rank(s, 5).items[0] for s in sessions]
    status, answer = call(port, "POST", "/recommend", {"sessions": [["item1"]], "k": 0})
    assert status == 422 and "greater than or equal to 1" in json.dumps(answer)
    assert call(port, "POST", "/advance", {"sessions": []})[0] == 404


@pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc").exists(), reason="workers are forked (Linux)")
def test_a_dead_worker_stops_the_service(two_workers) -> None:
    _, service, _, _ = two_workers
    os.kill(workers_of(service.pid)[0], signal.SIGKILL)
    assert service.wait(timeout=30) == 2
    error = service.stderr.read()
    assert "exited with status -9: the service stopped" in error and "Traceback" not in error


@pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc").exists(), reason="workers are forked (Linux)")
def test_workers_serve_the_day_the_advance_command_folded_in(two_workers, tmp_path: Path) -> None:
    port, _, _, model_dir = two_workers
    assert {call(port, "GET", "/health")[1]["day"] for _ in range(10)} == {3}
    day = tmp_path / "day.csv"
    day.write_text("session_id,item_id\n1,item1\n1,item2\n2,item3\n2,item4\n")
    assert main(["advance", "--model", str(model_dir), "--input", str(day)]) == 0
    deadline = time.monotonic() + 20
    while {call(port, "GET", "/health")[1]["day"] for _ in range(10)} != {4}:  # every worker, each new connection
        assert time.monotonic() < deadline, "the workers did not reload the advanced artefact"
        time.sleep(0.2)
    status, answer = call(port, "POST", "/recommend", {"sessions": [["item1"]], "k": 3})
    assert status == 200 and answer["day"] == 4


def test_advance_is_refused_with_several_workers(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    token = tmp_path / "token"
    token.write_text("a" * 32)
    argv = ["http", "--model", str(tmp_path / "absent"), "--workers", "2", "--advance-token-file", str(token)]
    assert main(argv) == 2
    assert "--advance-token-file needs --workers 1" in capsys.readouterr().err
    assert main(["http", "--model", str(tmp_path), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_each_worker_listens_on_its_own_socket_and_gets_a_share_of_the_connections() -> None:
    """One socket shared by the workers let whichever woke first accept every connection (one worker served all
    32 of the benchmark); with a socket each (SO_REUSEPORT) the kernel spreads them. Port 0 picks one port."""
    import uvicorn

    from recbole_tasrec.serve.http import worker_sockets

    sockets = worker_sockets(uvicorn.Config(app=None, host="127.0.0.1", port=0), 2)
    clients = []
    try:
        port = sockets[0].getsockname()[1]
        assert len(sockets) == 2 and sockets[1].getsockname()[1] == port and sockets[0] is not sockets[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        accepted = []
        for listening in sockets:
            listening.setblocking(False)
            count = 0
            while True:
                try:
                    listening.accept()[0].close()
                except BlockingIOError:
                    break
                count += 1
            accepted.append(count)
        assert sum(accepted) == 32 and min(accepted) > 0, accepted  # all on one: probability 2^-31
    finally:
        for one in [*clients, *sockets]:
            one.close()


def test_a_port_in_use_is_named() -> None:
    import uvicorn

    from recbole_tasrec.serve.http import worker_sockets

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}.*another --port"):
            worker_sockets(uvicorn.Config(app=None, host="127.0.0.1", port=port), 2)
