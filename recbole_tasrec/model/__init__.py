"""Models of this package (looked up by name before RecBole's: ``recbole_tasrec.config.get_model``)."""

from recbole_tasrec.model.tasrec import TASRec

__all__ = ["TASRec"]
