"""Where the time goes: facts about closed tickets (``refresh``), and the reports made of them
(``categories``, ``automation``, ``companies`` in ``build``), shared by the CLI and the API."""
