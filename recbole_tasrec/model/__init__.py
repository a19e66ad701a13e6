"""Models of this package (looked up by name before RecBole's: ``recbole_tasrec.config.get_model``).

TASRec, and the baselines RecBole lacks: the paper's LESSR and CSRM, and the nearest-neighbour methods SKNN,
V-SKNN and STAN.
"""

from recbole_tasrec.model.csrm import CSRM
from recbole_tasrec.model.lessr import LESSR
from recbole_tasrec.model.sknn import SKNN
from recbole_tasrec.model.stan import STAN
from recbole_tasrec.model.tasrec import TASRec
from recbole_tasrec.model.vsknn import VSKNN

__all__ = ["CSRM", "LESSR", "SKNN", "STAN", "TASRec", "VSKNN"]
