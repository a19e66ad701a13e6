"""Ray Tune hyperparameter sweeps for TASRec and any RecBole sequential model (``python -m recbole_tasrec.tune``).

:mod:`.space` reads search spaces (no Ray needed), :mod:`.sweep` runs trials on a local Ray or a cluster,
:mod:`.report` writes ``results.csv``, ``best.yaml`` and the curves plot, :mod:`.cli` is the command line.
"""

from recbole_tasrec.tune.cli import main
from recbole_tasrec.tune.space import Param, SearchSpaceError, load_search_space

__all__ = ["Param", "SearchSpaceError", "load_search_space", "main"]
