"""recbole-tasrec: TASRec (SIGIR 2021) for RecBole 1.2.1 on a modern stack.

Importing the package applies the RecBole 1.2.1 fixes of :mod:`recbole_tasrec.compat` once, and routes what RecBole
writes into the run folder (:mod:`recbole_tasrec.run_folder`).
"""

from recbole_tasrec import compat, run_folder

compat.apply()
run_folder.install()

from recbole_tasrec.quick_start import (  # noqa: E402  (after the patches, which RecBole needs to import cleanly)
    load_data_and_model,
    prepare_data,
    run_recbole_tasrec,
)

__all__ = ["load_data_and_model", "prepare_data", "run_recbole_tasrec"]
__version__ = "0.1.0"
