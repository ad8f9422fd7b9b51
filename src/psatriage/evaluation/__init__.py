"""Measuring accuracy: ``measures`` (plain numbers from predictions, no I/O) and ``runs`` (a
labeled file through an engine's real classifier, shared by ``psatriage eval`` and ``bench/``)."""
