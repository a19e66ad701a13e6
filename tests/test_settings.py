"""The table of settings (:mod:`recbole_tasrec.settings`): its defaults are the yaml files', every yaml value passes
it, every key of this package's yaml files has a row, and its parser and checks say what they accept."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
import recbole
import yaml

from recbole_tasrec.config import Config
from recbole_tasrec.data.dataloader import DAY_ORDERS
from recbole_tasrec.data.temporal_graph import EDGE_WEIGHTS
from recbole_tasrec.model.csrm import MEMORY_EVAL_MODES
from recbole_tasrec.model.stan import ANCHORS
from recbole_tasrec.model.vsknn import POSITION_WEIGHTS, STEP_WEIGHTS
from recbole_tasrec.settings import BY_KEY, DATASET_KEYS, SETTINGS, YamlLoader, check, parse_value

ROOT = Path(__file__).resolve().parents[1]
PROPERTIES = ROOT / "properties"
RECBOLE_PROPERTIES = Path(recbole.__file__).parent / "properties"


def read(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=YamlLoader) or {}


def own_files() -> list[Path]:
    return [PROPERTIES / "overall.yaml", *sorted((PROPERTIES / "model").glob("*.yaml")), *PROPERTIES.glob("dataset/*")]


def test_each_default_is_the_one_in_its_yaml_file() -> None:
    for row in SETTINGS:
        if row.home is None:  # derived at run time (checkpoint_dir: <run_dir>/saved)
            continue
        home = PROPERTIES / ("overall.yaml" if row.home == "overall" else f"model/{row.home}.yaml")
        values = read(home)
        assert row.key in values, f"{row.key}: no line in {home.name}"
        assert values[row.key] == row.default and type(values[row.key]) is type(row.default), (row.key, home.name)


@pytest.mark.parametrize("path", [*own_files(), RECBOLE_PROPERTIES / "overall.yaml"], ids=lambda p: p.name)
def test_every_yaml_value_passes_the_table(path: Path) -> None:
    check(read(path))


def test_recbole_models_defaults_pass_the_table() -> None:
    """A RecBole model's own yaml (GRU4Rec's n_layers, NARM's dropout_probs, ...) is never refused."""
    for path in sorted((RECBOLE_PROPERTIES / "model").glob("*.yaml")):
        values = read(path)
        for key in BY_KEY.keys() & values.keys():
            assert BY_KEY[key].allowed.accepts(values[key]), (path.name, key, values[key])


def test_every_key_of_this_packages_yaml_files_has_a_row() -> None:
    recbole_keys = {key for path in RECBOLE_PROPERTIES.rglob("*.yaml") for key in read(path)}
    for path in own_files():
        missing = sorted(read(path).keys() - recbole_keys - BY_KEY.keys())
        assert not missing, f"{path.name}: add a row to recbole_tasrec/settings.py for {missing}"


def test_rows_are_unique_and_the_data_set_keys_are_the_protocols() -> None:
    assert len(BY_KEY) == len(SETTINGS)
    protocol = ["day_span", "day_start", "min_session_length", "min_item_clicks", "test_day_ratio",
                "valid_session_ratio"]  # fmt: skip
    assert set(DATASET_KEYS) == {"DAY_FIELD", "MAX_ITEM_LIST_LENGTH", "drop_unseen_targets", *protocol}


def test_the_modules_word_lists_are_the_tables() -> None:
    """The graph, loader, memory and kNN classes keep their own argument checks (they are used without a Config)."""
    assert set(BY_KEY["edge_weight"].allowed.choices) == set(EDGE_WEIGHTS)
    assert set(BY_KEY["train_day_order"].allowed.choices) == set(DAY_ORDERS)
    assert set(BY_KEY["memory_eval"].allowed.choices) == set(MEMORY_EVAL_MODES)
    assert set(BY_KEY["item_anchor"].allowed.choices) == set(ANCHORS)
    assert set(BY_KEY["weighting"].allowed.choices) == set(POSITION_WEIGHTS) == set(STEP_WEIGHTS)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


def test_the_table_and_config_import_no_model_or_data_module() -> None:
    table = imported_modules(ROOT / "recbole_tasrec" / "settings.py")
    assert table <= {"__future__", "ast", "math", "numbers", "re", "collections.abc", "dataclasses", "functools",
                     "typing", "yaml", "zoneinfo"}, table  # fmt: skip
    config = imported_modules(ROOT / "recbole_tasrec" / "config.py")
    assert not [m for m in config if m.startswith(("recbole_tasrec.data", "recbole_tasrec.model"))], config


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("epochs", "5", 5),
        ("learning_rate", "1e-4", 1e-4),
        ("topk", "[10, 20]", [10, 20]),
        ("eval_args", "{'split': {'LS': 'valid_and_test'}}", {"split": {"LS": "valid_and_test"}}),
        ("show_progress", "false", False),
        ("show_progress", "True", True),
        ("lr_decay_epochs", "None", None),
        ("valid_metric", "Recall@20", "Recall@20"),
        ("user_inter_num_interval", "[0,inf)", "[0,inf)"),
        ("epochs", "2024/12", "2024/12"),  # an expression stays text: RecBole's eval gave 168.67
        ("epochs", "__import__('os').getcwd()", "__import__('os').getcwd()"),
        ("epochs", "{1, 2}", "{1, 2}"),  # a set is no setting value (RecBole keeps such text too)
        ("epochs", "[" * 100_000, "[" * 100_000),  # too deep for the parser: text, no crash
        ("run_dir", "2024", "2024"),  # a text setting stays as written
        ("DAY_FIELD", "None", "None"),
    ],
)
def test_parse_value_reads_literals_only(key: str, text: str, value: object) -> None:
    assert parse_value(key, text) == value and type(parse_value(key, text)) is type(value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"day_span": True}, "day_span must be a whole number >= 1, got True"),
        ({"decay": 0}, "decay must be a number > 0 and <= 1, got 0"),
        ({"neighbor_threshold": float("nan")}, "neighbor_threshold must be a number >= 0, got nan"),
        ({"dropout_probs": [0.2, 1.0]}, "dropout_probs must be a list of numbers >= 0 and < 1, got [0.2, 1.0]"),
        ({"embedding_max_norm": "x"}, "embedding_max_norm must be a number > 0, or ~ (none), got 'x'"),
        ({"session_edge_weight": "weighted"}, "session_edge_weight must be one of count, binary, got 'weighted'"),
        ({"lr_scheduler": "plateau", "lr_patience": 4, "stopping_step": 3}, "lr_patience=4 must be smaller"),
        ({"use_session_graph": False, "use_temporal_graph": False}, "use_session_graph and use_temporal_graph cannot"),
    ],
)
def test_check_names_the_key_and_what_it_accepts(values: dict, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        check(values)
    assert str(caught.value).startswith(message)


def test_check_passes_what_the_table_allows_and_skips_absent_keys() -> None:
    check({"embedding_max_norm": None, "lr_scheduler": "paper", "lr_patience": 9, "stopping_step": 3})
    check({})


@pytest.mark.parametrize("model", ["TASRec", "CSRM", "LESSR", "SKNN", "STAN", "VSKNN", "SRGNN", "GRU4Rec", "NARM"])
def test_every_models_defaults_build_a_config(model: str) -> None:
    for dataset in ("sample", "diginetica", "retailrocket", "aotm"):
        Config(model, dataset, config_dict={"state": "ERROR"})


def test_an_unpickled_config_is_checked(tmp_path: Path) -> None:
    config = Config("TASRec", "sample", config_dict={"run_dir": str(tmp_path)})
    assert pickle.loads(pickle.dumps(config))["run_dir"] == str(tmp_path)
    config.final_config_dict["temporal_eval"] = "sideways"  # e.g. a checkpoint written by another version
    with pytest.raises(ValueError, match="temporal_eval must be one of streaming, frozen, got 'sideways'"):
        pickle.loads(pickle.dumps(config))
