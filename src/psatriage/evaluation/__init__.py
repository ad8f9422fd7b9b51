"""Measuring accuracy: ``measures`` (plain numbers from predictions, no I/O) and ``runs`` (a
labeled file through an engine's real classifier, shared by ``psatriage eval`` and ``bench/``);
``backtest`` (a tenant's closed tickets through the pipeline's classification, checkpointed),
``backtest_report`` and ``hygiene`` (its report and the category tree's health), ``readiness``
(the go-live checklist) and ``engines`` (a tenant's classifier as a named engine)."""
