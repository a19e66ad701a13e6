"""recbole-tasrec."""
