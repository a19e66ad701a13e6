"""Hostile input to the serving CLI and HTTP API: a clear error or the documented handling, never a traceback,
never partial output. (The converters' and the runner's config hostile inputs are tested with them.)"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recbole_tasrec.harness.random_model import random_recommender
from recbole_tasrec.serve.cli import main
from recbole_tasrec.serve.http import MAX_SESSION, create_app
from recbole_tasrec.serve.session_file import SessionFileError, read_sessions
from tests.conftest import served

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ITEMS = [f"item{i}" for i in range(1, 40)]
item_ids = st.one_of(st.sampled_from(ITEMS), st.text(min_size=1, max_size=300), st.integers(-(2**70), 2**70))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_recommender(40, days=2, sessions_per_day=20, embedding_size=8, n_layers=1).save(
        tmp_path_factory.mktemp("hostile") / "model"
    )


@pytest.fixture(scope="module")
def port(model_dir: Path) -> Iterator[int]:
    from recbole_tasrec.serve import SessionRecommender

    app = create_app(SessionRecommender.from_artifact(model_dir), save_to=None)
    with served(app, log_level="critical") as port:
        yield port


def post(port: int, path: str, payload: bytes) -> tuple[int, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", path, payload, {"Content-Type": "application/json"})
    response = connection.getresponse()
    status, body = response.status, json.loads(response.read())
    connection.close()
    return status, body


# --- click files -----------------------------------------------------------------------------------------
csv_text = st.lists(
    st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12), min_size=0, max_size=4),
    max_size=8,
).map(lambda rows: "\n".join(",".join(row) for row in rows))


@FAST
@given(text=csv_text, header=st.sampled_from(["session_id,item_id\n", "session_id;item_id\n", "a,b,c\n", ""]))
def test_any_text_is_read_or_refused_clearly(tmp_path: Path, text: str, header: str) -> None:
    path = tmp_path / "clicks.csv"
    path.write_text(header + text, encoding="utf-8")
    try:
        table = read_sessions(path)
    except SessionFileError as error:
        assert str(path) in str(error)
        return
    assert table.offsets[-1] == len(table.items) and len(table.sessions()) == len(table)


@FAST
@given(data=st.binary(max_size=200))
def test_any_bytes_are_read_or_refused_clearly(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "clicks.csv"
    path.write_bytes(b"session_id,item_id\n" + data)
    try:
        read_sessions(path)
    except SessionFileError as error:
        assert str(path) in str(error)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("session_id,item_id\n", "no clicks"),
        ("session_id;item_id\n1;2\n", "no 'session_id'"),  # wrong separator
        ("session,item\n1,2\n", "no 'session_id'"),  # missing columns
        ("session_id,item_id\n1,2\n1,", "line 3: empty 'item_id'"),  # truncated mid-line
        ('session_id,item_id\n1,"2\n', "not a well-formed"),  # an unterminated quote
        ("session_id,item_id\n1,2,3,4\n", "line 2: more fields than the header"),  # extra fields
        ("session_id,item_id\n1,2\n1,2,3\n", "not a well-formed"),  # extra fields later on
    ],
)
def test_bad_click_files_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "clicks.csv"
    path.write_text(content)
    with pytest.raises(SessionFileError, match=message):
        read_sessions(path)


def test_bad_inter_timestamps_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "day.inter"
    path.write_text("session_id:token\titem_id:token\ttimestamp:float\n1\ta\t5\n1\tb\tsoon\n")
    with pytest.raises(SessionFileError, match="line 3: timestamp 'soon'"):
        read_sessions(path)


@FAST
@given(sessions=st.lists(st.lists(item_ids, min_size=1, max_size=30), min_size=1, max_size=5))
def test_cli_recommend_writes_everything_or_nothing(model_dir: Path, tmp_path: Path, sessions, capsys) -> None:
    clicks, out = tmp_path / "in.csv", tmp_path / "out.csv"
    out.unlink(missing_ok=True)
    lines = [f"s{n},{json.dumps(str(item))}" for n, session in enumerate(sessions) for item in session]
    clicks.write_text("session_id,item_id\n" + "\n".join(lines) + "\n", encoding="utf-8")
    code = main(["recommend", "--model", str(model_dir), "--input", str(clicks), "--k", "3", "--output", str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 0:
        assert out.read_text().startswith("session_id,rank,item_id,score")
    else:
        assert code == 2 and err.startswith("error: ") and not out.exists()


def test_cli_refuses_a_folder_as_input_and_writes_nothing(model_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.csv"
    assert main(["recommend", "--model", str(model_dir), "--input", str(tmp_path), "--output", str(out)]) == 2
    assert "is a folder" in capsys.readouterr().err and not out.exists()


# --- the HTTP API ------------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)


@FAST
@given(body=st.one_of(json_values, st.fixed_dictionaries({"sessions": json_values, "k": json_values})))
def test_any_json_gets_an_answer_or_a_422(port: int, body: object) -> None:
    status, answer = post(port, "/recommend", json.dumps(body).encode())
    assert status in (200, 422)
    if status == 422:
        assert answer["detail"]


@FAST
@given(
    sessions=st.lists(st.lists(item_ids, min_size=1, max_size=50), min_size=1, max_size=5),
    k=st.integers(1, len(ITEMS)),
)
def test_unicode_long_and_unknown_ids_are_skipped_and_reported(port: int, sessions, k: int) -> None:
    status, answer = post(port, "/recommend", json.dumps({"sessions": sessions, "k": k}).encode())
    assert status == 200 and len(answer["results"]) == len(sessions)
    for session, result in zip(sessions, answer["results"], strict=True):
        known = [str(item) for item in session if str(item) in ITEMS]
        assert set(result["unknown_items"]) == {str(item) for item in session} - set(known)
        assert (len(result["items"]) == min(k, len(ITEMS))) == bool(known)


def test_huge_sessions_and_garbage_bytes(port: int) -> None:
    huge = {"sessions": [ITEMS * (MAX_SESSION // len(ITEMS))], "k": 5}
    status, answer = post(port, "/recommend", json.dumps(huge).encode())
    assert status == 200 and len(answer["results"][0]["items"]) == 5  # the last clicks are used
    status, answer = post(port, "/recommend", json.dumps({"sessions": [ITEMS * MAX_SESSION]}).encode())
    assert status == 422 and f"at most {MAX_SESSION} items" in json.dumps(answer)
    for garbage in (b"", b"\xff\xfe\x00", b"[" * 5000, b'{"sessions": [["a"]]} trailing'):
        status, answer = post(port, "/recommend", garbage)
        assert status == 422 and answer["detail"]
    assert post(port, "/advance", b'{"sessions": [[]]}')[0] == 404  # not enabled on this service


# --- requests that must not hurt others --------------------------------------------------------------------------
def test_a_huge_k_is_a_422_and_never_fails_the_requests_scored_with_it(port: int) -> None:
    good = json.dumps({"sessions": [ITEMS[:2]], "k": 3}).encode()
    hostile = json.dumps({"sessions": [ITEMS[:2]], "k": 2**63}).encode()
    answers: list = [None] * 20

    def client(n: int) -> None:
        answers[n] = post(port, "/recommend", hostile if n % 5 == 0 else good)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(len(answers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in answers] == [422 if n % 5 == 0 else 200 for n in range(len(answers))]
    assert "more than the 39 items" in json.dumps(answers[0][1])


def test_a_failing_request_in_a_batch_fails_alone(model_dir: Path) -> None:
    from recbole_tasrec.serve import SessionRecommender
    from recbole_tasrec.serve.http import Batcher, RecommendRequest, Service

    batcher = Batcher(Service(SessionRecommender.from_artifact(model_dir)))
    good = RecommendRequest(sessions=[ITEMS[:2]], k=3)
    bad = RecommendRequest.model_construct(sessions=[ITEMS[:2]], k="not a number", exclude_seen=False)

    async def together() -> list:
        return await asyncio.gather(*(batcher.submit(r) for r in (good, bad, good)), return_exceptions=True)

    answers = asyncio.run(together())
    assert isinstance(answers[1], Exception)
    assert [len(a["results"][0]["items"]) for a in (answers[0], answers[2])] == [3, 3]


def test_the_cli_refuses_a_huge_k_in_one_line(model_dir: Path, tmp_path: Path, capsys) -> None:
    clicks = tmp_path / "s.csv"
    clicks.write_text(f"session_id,item_id\n1,{ITEMS[0]}\n")
    out = tmp_path / "r.csv"
    assert main(["recommend", "--model", str(model_dir), "--input", str(clicks), "--k", "1" + "0" * 20, "--output",
                 str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--k 100000000000000000000 is more than the 39 items" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_body_over_the_limit_is_refused_before_it_is_read(model_dir: Path) -> None:
    from recbole_tasrec.serve import SessionRecommender

    app = create_app(SessionRecommender.from_artifact(model_dir), max_body_bytes=1000)
    body = json.dumps({"sessions": [ITEMS * 40]}).encode()
    assert len(body) > 1000
    with served(app, log_level="critical") as port:
        status, answer = post(port, "/recommend", body)
        assert status == 413 and "over the limit of 1000 bytes" in answer["detail"]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # no Content-Length: chunks
        connection.request("POST", "/recommend", iter([body[:600], body[600:]]), {"Content-Type": "application/json"},
                           encode_chunked=True)  # fmt: skip
        response = connection.getresponse()
        assert response.status == 413 and "over the limit" in json.loads(response.read())["detail"]
        connection.close()
        assert post(port, "/recommend", json.dumps({"sessions": [ITEMS[:2]], "k": 2}).encode())[0] == 200


def test_health_answers_while_a_large_request_is_scored(model_dir: Path, monkeypatch) -> None:
    """A batch of more scores than INLINE_SCORES is scored off the event loop (a small one is scored on it: a
    thread hand-off costs more than the scoring); here one session of the test model's items is over it."""
    from recbole_tasrec.serve import SessionRecommender
    from recbole_tasrec.serve import http as service_http
    from recbole_tasrec.serve.ranking import Ranker

    recommender = SessionRecommender.from_artifact(model_dir)
    monkeypatch.setattr(service_http, "INLINE_SCORES", len(recommender.item_tokens) - 1)

    health_answered, scoring = threading.Event(), threading.Event()
    rank = Ranker.rank

    def slow_rank(self, *args, **kwargs):  # scoring that ends only once /health has answered meanwhile
        scoring.set()
        health_answered.wait(20)
        return rank(self, *args, **kwargs)

    monkeypatch.setattr(Ranker, "rank", slow_rank)
    with served(create_app(recommender), log_level="critical") as port:
        outcome: dict = {}
        body = json.dumps({"sessions": [ITEMS[:2]], "k": 2}).encode()
        worker = threading.Thread(target=lambda: outcome.update(answer=post(port, "/recommend", body)))
        worker.start()
        assert scoring.wait(20)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # times out if the loop is blocked
        connection.request("GET", "/health")
        assert connection.getresponse().status == 200
        health_answered.set()
        worker.join()
    assert outcome["answer"][0] == 200


def test_advance_and_docs_are_off_unless_enabled(model_dir: Path, port: int) -> None:
    from recbole_tasrec.serve import SessionRecommender

    assert post(port, "/advance", b'{"sessions": []}')[0] == 404
    for path in ("/docs", "/openapi.json", "/redoc"):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", path)
        assert connection.getresponse().status == 404, path
    with pytest.raises(ValueError, match="at least 16 characters"):
        create_app(SessionRecommender.from_artifact(model_dir), advance_token="short")
    app = create_app(SessionRecommender.from_artifact(model_dir), docs=True)
    assert "/docs" in {route.path for route in app.routes} and "/advance" not in {r.path for r in app.routes}


# --- artefacts edited by hand, and advances that must not half-happen ---------------------------------------
def copy_of(model_dir: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(model_dir, tmp_path / "model"))


def edit_meta(target: Path, *, fix_checksum: bool, **changes: object) -> None:
    from recbole_tasrec.serve.artifact import meta_digest

    meta = {**json.loads((target / "meta.json").read_text()), **changes}
    if fix_checksum:
        meta["meta_sha256"] = meta_digest(meta)
    (target / "meta.json").write_text(json.dumps(meta))


def test_swapped_item_ids_in_meta_json_are_refused(model_dir: Path, tmp_path: Path, capsys) -> None:
    target = copy_of(model_dir, tmp_path)
    tokens = json.loads((target / "meta.json").read_text())["item_tokens"]
    tokens[1], tokens[2] = tokens[2], tokens[1]
    edit_meta(target, fix_checksum=False, item_tokens=tokens)
    clicks = tmp_path / "s.csv"
    clicks.write_text(f"session_id,item_id\n1,{ITEMS[0]}\n")
    out = tmp_path / "r.csv"
    assert main(["recommend", "--model", str(target), "--input", str(clicks), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{target / 'meta.json'} does not match its own checksum" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"item_tokens": ["[PAD]", *ITEMS[:-1], ITEMS[0]]}, f"key 'item_tokens' lists the item id '{ITEMS[0]}' twice"),
        (
            {"settings": {"model": "TASRec", "embedding_size": [8, 16]}},
            "key 'settings.embedding_size' must be one value",
        ),
        ({"settings": {"model": "TASRec", "embedding_size": "big"}}, "key 'settings.embedding_size' must be int"),
        ({"settings": {"model": "TASRec", "n_layers": True}}, "key 'settings.n_layers' must be int"),
        ({"n_items": "40"}, "key 'n_items' must be an integer"),
        ({"day": 2.5}, "key 'day' must be an integer"),
        ({"settings": ["model"]}, "key 'settings' must be an object"),
        ({"folded": [1]}, "key 'folded' must hold text only"),
        ({"settings": {"model": "STAN"}}, "key 'settings.model' is 'STAN' but the artefact is a TASRec"),
    ],
)
def test_bad_meta_json_values_get_one_line_naming_the_key(model_dir: Path, tmp_path: Path, capsys, changes, message):
    target = copy_of(model_dir, tmp_path)
    edit_meta(target, fix_checksum=True, **changes)
    clicks = tmp_path / "s.csv"
    clicks.write_text(f"session_id,item_id\n1,{ITEMS[0]}\n")
    argv = ["recommend", "--model", str(target), "--input", str(clicks), "--output", str(tmp_path / "r.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "meta.json" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_format_1_artefact_loads_with_a_one_line_warning(model_dir: Path, tmp_path: Path, caplog) -> None:
    import hashlib
    import logging

    import torch

    from recbole_tasrec.serve import load_artifact

    target = copy_of(model_dir, tmp_path)
    meta = json.loads((target / "meta.json").read_text())
    for name in ("weights.pt", "graph.pt"):  # format 1: weights without a header, the graph's says format 1
        tensors = torch.load(target / name, weights_only=True)
        header = tensors.pop("header")
        if name == "graph.pt":
            tensors["header"] = torch.tensor([1, *header.tolist()[1:]])
        torch.save(tensors, target / name)
        meta["sha256"][name] = hashlib.sha256((target / name).read_bytes()).hexdigest()
    old = {key: meta[key] for key in ("package_version", "n_items", "day", "settings", "sha256", "item_tokens")}
    (target / "meta.json").write_text(json.dumps({"format": 1, **old, "graph": meta["state"]}))
    with caplog.at_level(logging.WARNING, logger="recbole_tasrec.serve.artifact"):
        loaded = load_artifact(target)
    assert "artefact format 1" in caplog.text and "save it again" in caplog.text
    current = load_artifact(model_dir)
    assert loaded.day == current.day and torch.equal(loaded.scores([ITEMS[:3]]), current.scores([ITEMS[:3]]))
    assert json.loads((loaded.save(target) / "meta.json").read_text())["format"] == 2


def test_cli_advance_writes_first_and_never_folds_a_day_twice(model_dir: Path, tmp_path: Path, capsys, monkeypatch):
    import errno

    import torch

    from recbole_tasrec.serve import load_artifact

    target = copy_of(model_dir, tmp_path)
    before = (target / "meta.json").read_bytes()
    day = tmp_path / "day.csv"
    day.write_text(f"session_id,item_id\na,{ITEMS[0]}\na,{ITEMS[1]}\nb,{ITEMS[2]}\nb,{ITEMS[3]}\n")
    argv = ["advance", "--model", str(target), "--input", str(day)]
    save = torch.save
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", lambda *args, **kwargs: (_ for _ in ()).throw(full))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert (target / "meta.json").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "day.csv", "model"]  # fmt: skip
    monkeypatch.setattr(torch, "save", save)
    assert main(argv) == 0  # the retry: nothing had changed
    assert "day 2 -> 3" in capsys.readouterr().out
    after = (target / "meta.json").read_bytes()
    assert main(argv) == 2
    assert "folded in already" in capsys.readouterr().err
    assert (target / "meta.json").read_bytes() == after and load_artifact(target).day == 3
