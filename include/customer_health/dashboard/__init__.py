"""The customer-health dashboard inside the Airflow UI.

A FastAPI app (``dashboard.app``) mounted by the Airflow plugin
``plugins/customer_health_dashboard.py`` at ``/customer-health`` on the api-server, and linked
from the Airflow navigation as an external view. Every page is server-rendered HTML with inline
SVG charts (no CDN, no chart library, no inline script or style) and has a JSON twin under ``/customer-health/api``.

* ``queries`` - one indexed query set per page, over the warehouse (``get_engine()``);
* ``worklist`` - the CSM worklist: accounts by owner, zone, plan or segment, by priority, with
  their open actions;
* ``export`` - the lists as CSV downloads (``?format=csv``), guarded against formula injection;
* ``security`` - the headers every response carries (CSP, frame and sniffing rules, referrer);
* ``charts`` - the hand-written SVG charts;
* ``auth`` - the Airflow UI's login reused (its JWT, cookie or bearer), who may override a
  score, and the override form's CSRF protection;
* ``app`` - routes, templates (``templates/``) and static assets (``static/``).
"""
