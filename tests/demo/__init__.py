"""The README's commands as a new user runs them: ``make demo``'s code path and ``make airflow``.

Each test runs the real commands in subprocesses on brand-new homes (``CUSTOMER_HEALTH_HOME`` and
``AIRFLOW_HOME`` in a temporary folder, the sandbox on free ports), so they never touch a
developer's ``.local`` state or running demo, and stops every process it started.
"""
