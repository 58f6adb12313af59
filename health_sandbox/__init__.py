"""The sandbox: loopback stand-ins for Salesforce, Zendesk, Stripe, the product database, Slack,
SMTP and the marketing tool, serving synthetic companies (``company``, ``self_serve``), and the
demo (``python -m health_sandbox.demo``).

A package of its own, beside the product (``include/customer_health``): the demo and the tests
use it, the production image does not ship it (docker-compose mounts only dags, plugins and
include). The product never imports it.
"""
