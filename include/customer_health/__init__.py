"""Customer health: score every customer 0-100, explain it, keep its history and act on it.

The package holds all the logic; the Airflow DAGs under ``dags/`` only wire it together.
Sub-packages: ``sources`` (extraction), ``warehouse`` (schema, migrations, engine),
``scoring`` (signals, normalization, the score), ``actions`` (rules, outbox, dispatch),
``validation`` (accuracy audits, recalibration) and ``sandbox`` (the synthetic company and the
loopback stand-ins for Salesforce, Zendesk, Stripe, the product DB and the action targets).
"""

__version__ = "0.1.0"
