"""Leaderboards: finished runs as validated CSV rows, the paper's reported numbers, and a static page.

- ``python -m leaderboards.submit RUN_DIR [...] --out FILE.csv``: rows from runs (:mod:`.submit`);
- ``python -m leaderboards.validate FILE.csv [...]``: one line per problem, exit status 2 (:mod:`.validate`);
- ``python -m leaderboards.render [FILE.csv ...] --out DIR``: Markdown tables and ``index.html`` (:mod:`.render`).

The CSV schema is :mod:`.schema`, documented in ``leaderboards/README.md``; ``reported.csv`` holds the
EverAnimate paper's Tables 1 and 2.
"""
