"""A plugin package like ``psatriage/psa``, holding one minimal example PSA (``example/``) and its
fake (``fake.py``): ``tests/psa/test_adding_a_psa.py`` discovers it the way the service discovers
the real ones and runs the contract suite on it. ``docs/adding-a-psa.md`` walks through it."""
