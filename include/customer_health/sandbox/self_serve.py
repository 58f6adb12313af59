"""The second synthetic company: a self-serve subscription product, unlike the first in structure.

The first company (``company.py``) is a B2B seat business with CSMs, contracts, Salesforce and
Zendesk. This one is what a large share of subscription businesses look like instead, and the
kind of company issue #18's foreign data came from: product events and monthly card billing,
nothing else. Its story below was fixed and committed before any generator code or model work
on it, and is never tuned to make a model, a signal or a benchmark look good. Its figures are
what the story implies; a generated company that misses them is a bug in the generator, not a
reason to edit the story.

The causal story
----------------
**The business.** *Pinwheel* is a visual planning app (boards, cards, templates) that individuals
and tiny teams buy on the web with a card: no salesperson, no customer-success manager, no support
desk. Two plans, billed monthly only, charged automatically to a card through Stripe:

* ``personal`` - $12 a month, one seat (~85 % of signups);
* ``team`` - $10 per member per month, 2-10 members, most 2-4 (~15 % of signups, more by upgrade).

Every account starts with a 14-day free trial that asks for a card up front, so a trial converts
unless the person cancels it. After the trial the account is billed on the same day of every month
(the trial's end), for its plan and its members at that moment; plan and member changes take
effect at the next invoice (no proration). There is no annual plan, no metered usage, no free
tier, no coupons, refunds or taxes.

**Who is an account.** The product account (``acct_000123``) is the customer: one person's or one
small team's workspace. Signup creates it and, at the same moment, a Stripe customer (the trial
needs a card) whose ``metadata.product_account_id`` names it; the application keeps the Stripe
customer's id on its own ``accounts`` row (``accounts.stripe_customer_id``, a column this product
adds to the four-table product schema; the product extraction does not read it). There is no
Salesforce Id anywhere. Identity is as messy as in life: ~1.5 % of Stripe customers lack the
metadata (made by an older checkout; only ``accounts.stripe_customer_id`` links them); ~1 % of
accounts have a second Stripe customer left by an abandoned checkout (metadata, no subscription,
no invoice); two Stripe customers belong to nothing (card tests) and two product accounts bill
nobody (staff workspaces).

**Population and tenure.** ``accounts`` counts every account in the data: the customers paying
when the window opens, ``B0 = accounts / (1 + 0.075 x days / 30.44)``, and the trials that start
inside it (the rest). Signups arrive at 7.5 % of ``B0`` per month, seasonally (January x1.3,
February x1.1, July and August x0.85, December x0.75, other months x1), so conversions roughly
replace churn and the paying book stays near ``B0``. Customers who joined before the window have
an age of 30 days plus an exponential with a mean of 420 days, at most 5 years (median ~10 months:
a young book, unlike the first company's contracts of up to five years), and they are survivors:
their fit (below) is drawn with weight ``exp(-0.05 x (1 - fit) x age in months)``. Their history
before the window is not generated (invoices and events start with the window, as in the first
company); they enter it paying, outside any trial, dunning or cancellation.

**Latent state.** Nothing below is observed; it causes every observable, with noise.

* *Fit* ``f ~ Beta(2, 1.5)``, fixed per account: how well the product matches the need.
* *Engagement* ``e(t)`` in [0, 1], daily: a target ``0.08 + 0.8 f``, plus a novelty bonus
  ``0.12 exp(-age / 21 days)`` in the first weeks, plus AR(1) noise (coefficient 0.9, innovation
  sd 0.04), clipped to [0.01, 0.99]. ``e30`` is its mean over the last 30 days.
* *Need loss*: after the trial, with a hazard of ``1.5 % + 3.5 % x (1 - f)`` per month, the need
  behind the subscription ends (the project is over, the person changed jobs, the team moved to
  another tool): the target falls linearly over 14-60 days to 0-15 % of its level. A quarter of
  lost needs return (30-120 days after the fall, the target climbs back over 30 days): declines
  that end without churn exist.
* *Traits*, fixed per account: a sharing habit ``s ~ Beta(1.5, 3)``; a card risk
  ``r ~ Beta(1.2, 4)``; the card's expiry, first in a month drawn uniformly over the 48 months
  after signup, then every 48 months. Each member has an activity propensity ``Gamma(2, 0.5)``.

**The product database** (``accounts``, ``users``, ``features``, ``events``; ``login`` is a
session start, every action is ``feature_used`` with its ``feature_key``). A personal account has
one user; a team account one user per member. A member is active on a day with probability
``min(0.95, (0.02 + 0.7 e^1.5) x propensity x weekday x season)``: weekends x0.3 for teams and
x0.8 for personal accounts (people plan their own lives at weekends), December 20 to January 1
x0.6, August x0.85. An active member has ``1 + Poisson(1.5 e)`` sessions, and per session
``Poisson(0.5 + 2.5 e)`` board edits (``board_edit``, core). Per active day: ``Poisson(0.25 e)``
new boards (``board_create``, core), on teams ``Poisson(0.8 e)`` comments (``comment``, core), a
shared link (``share_link``, core) with probability ``0.25 s e``, a template (``template_use``)
with probability ``0.05 + 0.4`` in the first two weeks, an export (``export``) with probability
``0.02 e``, a settings change (``settings_update``) with probability 0.02 (0.3 in the first week),
a visit to the billing page (``billing_view``) with probability 0.005 and an integration
connected (``integration_connect``) with probability 0.01 in the first month. Every invitation
sent is an ``invite_send``. What people do when they are leaving, and around plan changes, is in
the churn mechanism below. Users are deactivated when their seat goes and when the subscription
ends; usage stops with them.

**Stripe.** A customer at signup; a subscription created at signup, ``trialing`` for 14 days, with
a $0 invoice; then one invoice per month. Each invoice's first charge attempt fails with
probability ``1.2 % + 6 % x r``, and for certain when the card expired since the last charge and
the card updater did not replace it (55 % of expiries are replaced silently). A failed invoice
enters dunning: the subscription is ``past_due`` and Stripe retries 3, 8 and 15 days after the
invoice (``attempt_count`` up to 4). Each retry succeeds with probability 0.22 (the money came
back); independently the person updates the card during dunning with probability
``0.10 + 0.60 x e30`` (on a day drawn over the first 14), and the next retry succeeds. Paid
invoices carry ``paid_at``; when every retry has failed, the invoice is ``uncollectible`` and the
subscription is canceled 21 days after the invoice. Disputes are rare (below). Subscriptions show
``trialing``, ``active``, ``past_due`` or ``canceled``; a cancellation the person requested waits
for the period end with ``cancel_at_period_end`` set.

**Churn.** Five ways an account stops paying, each its own mechanism:

1. *Voluntary, visible (cause* ``disengaged`` *).* A paying account enters a *leaving state*
   with a daily hazard ``1.2 % x sigmoid((0.28 - e30) / 0.05)``, times 0.6 for a team with two
   or more members (collaborators lock a workspace in) and times ``1 - 0.35 s`` (people who share
   their boards have an audience). Separately, on an invoice day an account with ``e30 < 0.15``
   notices the charge and enters the leaving state with probability 0.25. The leaving state
   lasts 3-21 days (0-3 after noticing a charge); during it the member is active on at least
   35 % of days, board edits halve, exports are ten times as likely (people take their work
   with them), the billing page is visited with probability 0.25 a day and settings with 0.1.
   80 % of leaving states end in a cancellation request; 20 % end with the account staying. A
   request cancels at the period end; until then engagement is 30 % of its level.
2. *Voluntary, unseen (causes* ``unseen_life_change``, ``unseen_budget``,
   ``unseen_switched_tool`` *).* A constant hazard of 0.8 % per paying month, independent of
   everything above: a cancellation request with no leaving state, and usage as before until the
   service ends. No signal can see these; they are the model's honest false negatives.
3. *Involuntary (cause* ``payment_failed`` *).* Dunning that ends with every retry failed (above).
   Engaged people fix their card, so it concentrates on disengaged accounts, but not only.
4. *Disputes (cause* ``dispute`` *).* A paid charge is disputed with probability 0.05 %, 2 % when
   ``e30 < 0.1`` (people who forgot they subscribed), 5-45 days after it is paid; the product
   cancels the subscription the day the dispute opens.
5. *The trial.* At the trial's end the account converts with probability
   ``0.92 x sigmoid((mean e over the trial - 0.55) / 0.08)``. 85 % of those who do not convert
   cancel during the trial (on a day drawn over its 14, cause ``trial_not_converted``: they never
   paid, and are not churned customers); the other 15 % forget, are charged once and enter the
   leaving state 3-25 days later (accidental conversions, cause ``disengaged``).

Churn ends the subscription (status ``canceled``, ``canceled_at`` = the day service ended; the
sandbox store keeps one timestamp per subscription), deactivates the users, and the account never
comes back (no win-backs).

**Plan and seat changes.** A personal account upgrades to team with a hazard of
``0.8 % x clip((e30 - 0.5) / 0.3, 0, 1)`` per month, inviting 1-3 members (``invite_send``; each
invitation accepted with probability 0.7; billing pages visited). A team with ``e30 > 0.5`` invites
another member with a hazard of 3 % per month; each member other than the owner leaves with a
hazard of ``2 % + 4 % x (1 - e30)`` per month. A team left with its owner alone downgrades to
personal at the next invoice. Seats billed = members at the invoice.

**Base rates** (per month of paying-account exposure inside the window, on a 2,000-account x
730-day company; the tests check a smaller sample against the same ranges):

* trial conversion 50-70 % of trials that end inside the window;
* voluntary visible churn 2.0-4.0 % a month; unseen 0.4-1.1 %; involuntary 0.3-1.2 %; disputes
  under 0.2 %; all paid churn 3.0-5.5 % a month (30-50 % a year), and 9-16 % of the accounts
  paying on a day have churned 90 days later;
* the unseen causes are 10-25 % of all paid churn;
* 2-6 % of charged invoices fail their first attempt; 45-80 % of those are recovered in dunning;
* churn does not fall with tenure: the monthly rate of the first three paid months, of months
  4-12 and of months 13 and later are each within 0.67-1.5 times the overall rate (see the
  erratum below);
* team accounts are 12-30 % of the paying book.

**Seasonality.** Signups and activity only (above); churn has no calendar of its own.

**What is deliberately not in the data.** No Salesforce (no CRM accounts, contacts, activities,
opportunities, owners or Salesforce Ids), no Zendesk (no tickets, no satisfaction ratings), no
NPS or surveys, no CSMs or executive sponsors, no contracts or renewals, no annual billing, no
metered usage, no parent or child accounts, no win-backs, refunds, coupons or taxes. The sandbox
does not serve Salesforce or Zendesk for this company at all: they are not connected (no
endpoint, no Airflow connection), rather than connected and empty. It serves Stripe and the
product database, and the vendor's own tools the actions write to: Slack, e-mail and a marketing
tool whose lifecycle lists (newsletter, team-plan offer, advocacy, nurture) hold the members'
e-mail addresses.

**Ground truth.** ``truth_account`` (the store's table, never read by the pipeline) holds one row
per account keyed by the product account id: ``trajectory`` (``trial_only``, ``steady``,
``need_lost``, ``need_returned``), ``trajectory_start`` (the need loss, else signup),
``churn_date`` (the day service ended; the trial's end for ``trial_not_converted``),
``churn_cause`` (as above), ``expansion_date`` (first upgrade or added seat),
``contraction_date`` (first removed seat or downgrade), and the plan and seats at the end or at
churn.

**Determinism.** As in the first company: the same spec gives the same tables (only
``sandbox_meta.generated_at`` differs), every random draw comes from a ``numpy`` PCG64 stream
named after its purpose, timestamps are naive UTC and none is after ``end_date`` except Stripe's
scheduled ``current_period_end``.

**Erratum** (after the story's commit a8a4082, before any model work on this company; no
mechanism or parameter above changed). The story first claimed that "the first three paid months
churn at least 1.5 times as fast as months 13 and later (low fit leaves early)". That figure was
derived by hand and is not what the mechanisms above imply: the card-required trial converts
mostly accounts of high fit (low fit rarely converts), and need loss strikes at any tenure, so
after the trial the hazard is flat. Measured on the 2,000-account x 730-day company: 4.7 % a
month in the first three paid months, 4.0-4.9 % in months 4-12, 4.5-5.0 % after. The base rate
now states what the mechanisms imply. A company whose early months churn faster would need a
different story (a new version, committed before model work on it), not an edit of this one.
"""
