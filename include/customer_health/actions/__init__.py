"""Actions: from zone changes to CSM tasks, paused campaigns, escalations and advocacy, exactly once.

* ``config.load_action_rules`` - the validated rules (``config/actions_v1.yaml``);
* ``rules`` - which actions an account's new score triggers, and the anti-fatigue rules;
* ``decide.decide_actions`` - the day's decisions into ``action_outbox`` (status pending);
* ``outbox.pending_batches`` / ``outbox.dispatch_allowed`` - what a DAG run maps over, and whether
  it may deliver at all;
* ``dispatch.dispatch`` - deliver one action type's pending rows through ``targets`` clients;
* ``writeback.writeback_health_fields`` - the health score on every Salesforce Account.
"""
