"""Ray Tune hyperparameter sweeps for TASRec and any RecBole sequential model (``python -m recbole_tasrec.tune``).

:mod:`.space` reads search spaces and :mod:`.spec` checks what a sweep runs (neither needs Ray), :mod:`.ray_env`
starts or joins Ray, :mod:`.sweep` runs the trials, :mod:`.report` writes ``results.csv``, ``best.yaml`` and the curves
plot, :mod:`.cli` is the command line (it imports Ray only to run a sweep).
"""

from recbole_tasrec.tune.cli import main
from recbole_tasrec.tune.space import Param, SearchSpaceError, load_search_space

__all__ = ["Param", "SearchSpaceError", "load_search_space", "main"]
