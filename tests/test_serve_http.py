"""The HTTP service over real HTTP on 127.0.0.1: answers, 422s, and advances that never show a half graph."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recbole_tasrec.data.temporal_graph import TemporalGraph
from recbole_tasrec.harness.random_model import random_recommender
from recbole_tasrec.serve import SessionRecommender
from recbole_tasrec.serve.artifact import package_version
from recbole_tasrec.serve.http import MAX_ITEM_ID, create_app
from recbole_tasrec.serve.ranking import Ranker
from tests.conftest import served

SMALL = {"embedding_size": 16, "n_layers": 1}
TOKEN = "test-token-0123456789abcdef"


@pytest.fixture()
def service(tmp_path: Path) -> Iterator[tuple[int, SessionRecommender, Path]]:
    """A served untrained model of 60 items whose graph holds 3 random days, saving to ``model/``."""
    recommender = random_recommender(60, days=3, sessions_per_day=40, **SMALL)
    model_dir = recommender.save(tmp_path / "model")
    with served(create_app(recommender, model_dir, advance_token=TOKEN)) as port:
        yield port, recommender, model_dir


def call(
    port: int, method: str, path: str, body: object = None, raw: bytes | None = None, token: str = TOKEN
) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    connection.request(method, path, payload, headers)
    response = connection.getresponse()
    status, text = response.status, response.read().decode()
    connection.close()
    return status, json.loads(text)


def test_health_names_version_day_and_items(service) -> None:
    port, _, _ = service
    assert call(port, "GET", "/health") == (
        200,
        {"status": "ok", "version": package_version(), "day": 3, "n_items": 59},
    )


def test_recommend_answers_like_the_recommender(service) -> None:
    port, recommender, _ = service
    sessions = [["item3", "item7"], ["item9", "ghost", 12], ["ghost"]]
    status, answer = call(port, "POST", "/recommend", {"sessions": sessions, "k": 5})
    assert status == 200 and answer["day"] == 3
    expected = Ranker(recommender).rank([[str(i) for i in s] for s in sessions], 5)
    assert [r["items"] for r in answer["results"]] == expected.items
    assert [len(r["items"]) for r in answer["results"]] == [5, 5, 0]  # a session of unknown items: none
    assert [r["unknown_items"] for r in answer["results"]] == [[], ["ghost", "12"], ["ghost"]]
    top = recommender.scores([["item3", "item7"]])[0].topk(5)
    assert answer["results"][0]["scores"] == pytest.approx(top.values.tolist(), abs=1e-5)

    status, answer = call(port, "POST", "/recommend", {"sessions": [["item3", "item7"]], "k": 59, "exclude_seen": True})
    items = answer["results"][0]["items"]
    assert status == 200 and len(items) == 57 and not {"item3", "item7"} & set(items)  # 59 items less 2 seen


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"sessions": [[]]}, "at least 1 item"),
        ({"sessions": []}, "at least 1 item"),
        ({"sessions": [["item1"]], "k": 0}, "greater than or equal to 1"),
        ({"sessions": [["item1"]], "k": "many"}, "valid integer"),
        ({"sessions": "item1"}, "valid array"),  # JSON's word: the body is validated as JSON
        ({"sessions": [["item1"]], "top": 3}, "Extra inputs"),
        ({"sessions": [["x" * (MAX_ITEM_ID + 1)]]}, f"at most {MAX_ITEM_ID} characters"),
        ({"sessions": [[1.5]]}, "valid string"),
        ({}, "Field required"),
        ({"sessions": [["item1"]], "k": 60}, "k=60 is more than the 59 items"),
        ({"sessions": [["item1"]], "k": 2**64}, f"k={2**64} is more than the 59 items"),
    ],
)
def test_bad_requests_get_422_with_the_reason(service, body, reason) -> None:
    port, _, _ = service
    status, answer = call(port, "POST", "/recommend", body)
    assert status == 422 and reason in json.dumps(answer)


def test_malformed_json_gets_422(service) -> None:
    port, _, _ = service
    status, answer = call(port, "POST", "/recommend", raw=b'{"sessions": [["item1"]')
    assert status == 422 and "JSON" in json.dumps(answer)


def test_requests_during_an_advance_see_the_old_graph_or_the_new_one(service, monkeypatch) -> None:
    port, recommender, model_dir = service
    day = [["item1", "item2", "item3"], ["item4", "brand-new", "item5"], ["item2", "item6"]]
    probe = [["item1"], ["item4", "item2"]]
    old = Ranker(recommender).rank(probe, 10).items
    shadow = SessionRecommender.from_artifact(model_dir)
    shadow.advance_day(day)
    new = Ranker(shadow).rank(probe, 10).items
    assert old != new

    build = TemporalGraph.advance
    built, done = threading.Event(), {}

    def slow_build(self, src, dst):  # a long advance: the next graph exists, but takes 1.5 s more to finish
        build(self, src, dst)
        built.set()
        time.sleep(1.5)
        done["at"] = time.monotonic()

    monkeypatch.setattr(TemporalGraph, "advance", slow_build)
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.update(answer=call(port, "POST", "/advance", {"sessions": day})))
    worker.start()
    assert built.wait(30)
    seen = []  # (the items answered, when the answer arrived)
    while worker.is_alive():
        answer = call(port, "POST", "/recommend", {"sessions": probe, "k": 10})[1]
        seen.append(([r["items"] for r in answer["results"]], time.monotonic()))
    worker.join()
    during = [items for items, at in seen if at < done["at"]]
    assert len(during) >= 3 and all(items == old for items in during)  # the graph being built is not served
    assert all(items in (old, new) for items, _ in seen)
    status, summary = outcome["answer"]
    assert status == 200 and summary["day"] == 4 and summary["transitions"] == 4 and summary["unknown_items"] == 1
    assert [r["items"] for r in call(port, "POST", "/recommend", {"sessions": probe, "k": 10})[1]["results"]] == new
    assert SessionRecommender.from_artifact(model_dir).day == 4  # saved: a restart continues from day 4
    assert call(port, "POST", "/advance", {"sessions": []})[1]["day"] == 5  # an empty day only decays


def test_advance_needs_the_token(service) -> None:
    port, recommender, _ = service
    for token in ("", "wrong-token-0123456789abcdef", TOKEN[:-1]):
        status, answer = call(port, "POST", "/advance", {"sessions": []}, token=token)
        assert status == 401 and "Authorization: Bearer" in answer["detail"]
    assert recommender.day == 3  # nothing folded in
    assert call(port, "POST", "/advance", {"sessions": []})[0] == 200


def test_concurrent_requests_scored_together_get_their_own_answers(service) -> None:
    port, recommender, _ = service
    ranker = Ranker(recommender)
    requests = [
        {
            "sessions": [[f"item{1 + n % 50}", f"item{2 + n % 40}"]] * (1 + n % 3),
            "k": 1 + n % 7,
            "exclude_seen": n % 2 == 1,
        }
        for n in range(24)
    ]
    answers: list = [None] * len(requests)

    def client(offset: int) -> None:
        for n in range(offset, len(requests), 6):
            answers[n] = call(port, "POST", "/recommend", requests[n])

    threads = [threading.Thread(target=client, args=(offset,)) for offset in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for request, (status, answer) in zip(requests, answers, strict=True):
        expected = ranker.rank(request["sessions"], request["k"], request["exclude_seen"])
        assert status == 200 and [r["items"] for r in answer["results"]] == expected.items


def test_an_answers_day_and_scores_come_from_one_state(monkeypatch) -> None:
    from recbole_tasrec.serve.http import AdvanceRequest, RecommendRequest, Service

    recommender = random_recommender(60, days=3, sessions_per_day=40, **SMALL)
    service = Service(recommender)
    probe = [["item1", "item4"], ["item9"]]
    states = {recommender.day: recommender.state}

    def advance(n: int) -> None:
        service.advance(AdvanceRequest(sessions=[[f"item{1 + n}", f"item{2 + 2 * n}", "item7"]]))
        states[recommender.day] = recommender.state

    def expected(day: int) -> list[list[str]]:
        scores = recommender.scores(probe, states[day])
        return [[f"item{i}" for i in row.topk(10).indices.tolist()] for row in scores]

    encode, landed = type(recommender).encode, threading.Event()

    def encode_while_advancing(self, sessions):  # an advance lands while the request is read
        if not landed.is_set():
            landed.set()
            worker = threading.Thread(target=advance, args=(0,))
            worker.start()
            worker.join()
        return encode(self, sessions)

    monkeypatch.setattr(type(recommender), "encode", encode_while_advancing)
    answer = service.recommend([RecommendRequest(sessions=probe, k=10)])[0]
    assert landed.is_set() and recommender.day == 4
    assert answer["day"] == 3 and [r["items"] for r in answer["results"]] == expected(3)
    assert expected(3) != expected(4)
    monkeypatch.setattr(type(recommender), "encode", encode)

    answers = []
    advancing = threading.Thread(target=lambda: [advance(n) for n in range(1, 6)])
    advancing.start()
    while advancing.is_alive() or len(answers) < 3:
        answers.append(service.recommend([RecommendRequest(sessions=probe, k=10)])[0])
    advancing.join()
    assert {a["day"] for a in answers} <= set(states)
    for answer in answers:
        assert [r["items"] for r in answer["results"]] == expected(answer["day"])


def test_a_failed_save_leaves_the_served_model_and_the_artefact_unchanged(service, monkeypatch) -> None:
    import errno

    import torch

    port, recommender, model_dir = service
    before = (model_dir / "meta.json").read_bytes()
    probe = {"sessions": [["item1", "item4"]], "k": 10}
    served = call(port, "POST", "/recommend", probe)[1]["results"]
    day = {"sessions": [["item1", "item2", "item3"], ["item4", "item5"]]}
    save = torch.save
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", lambda *args, **kwargs: (_ for _ in ()).throw(full))
    status, answer = call(port, "POST", "/advance", day)
    assert status == 507 and "No space left on device" in answer["detail"] and "\n" not in answer["detail"]
    assert "unchanged" in answer["detail"]
    assert call(port, "GET", "/health")[1]["day"] == 3 and recommender.day == 3
    assert call(port, "POST", "/recommend", probe)[1]["results"] == served
    assert (model_dir / "meta.json").read_bytes() == before
    monkeypatch.setattr(torch, "save", save)
    status, answer = call(port, "POST", "/advance", day)  # the retry folds the day in once
    assert status == 200 and answer["day"] == 4
    status, answer = call(port, "POST", "/advance", day)  # and only once
    assert status == 409 and "folded in already" in answer["detail"]
    assert recommender.day == 4 and SessionRecommender.from_artifact(model_dir).day == 4


def test_without_a_folder_an_advance_is_served_and_not_saved(tmp_path: Path) -> None:
    recommender = random_recommender(60, days=3, sessions_per_day=40, **SMALL)
    model_dir = recommender.save(tmp_path / "model")
    before = (model_dir / "meta.json").read_bytes()
    with served(create_app(recommender, None, advance_token=TOKEN)) as port:
        status, answer = call(port, "POST", "/advance", {"sessions": [["item1", "item2"]]})
    assert status == 200 and answer["day"] == 4 and answer["saved"] is None and recommender.day == 4
    assert (model_dir / "meta.json").read_bytes() == before
