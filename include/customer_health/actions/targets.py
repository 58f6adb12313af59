"""The action targets: the clients that deliver outbox rows, and how their failures are read.

Each target is reached with its real client: simple_salesforce for Salesforce (tasks upserted
by the external id ``Health_Action_Key__c``), slack_sdk's ``WebhookClient`` (also what
Airflow's ``SlackWebhookHook.client`` returns) for Slack, SMTP (smtplib or Airflow's
``SmtpHook``) for e-mail, and for campaigns Salesforce Campaigns or HubSpot's official client
(``actions.campaign_targets``). Every failure is
turned into a ``TransientDeliveryError`` (retry later: 429, 5xx, a dropped connection) or a
``PermanentDeliveryError`` (a retry cannot help: 400, 403, 404, a rejected recipient).
Transient errors carry the target's ``Retry-After`` (seconds or an HTTP date, read by
``customer_health.retries``), and ``classify_delivery_error`` tells the shared retry loop which
errors are worth another try; ``DELIVERY_RETRY`` bounds how hard one delivery tries.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

import requests
import urllib3

from customer_health import settings
from customer_health.retries import Retryable, RetryPolicy, retry_after_from


class DeliveryError(Exception):
    """A delivery did not happen."""


class TransientDeliveryError(DeliveryError):
    """The target is unavailable for now; retry (after ``retry_after`` seconds when given)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """The target refused the request; retrying the same request cannot succeed."""


def classify_delivery_error(exc: BaseException) -> Retryable | None:
    """For ``retries.call_with_retries``: only a ``TransientDeliveryError`` is worth another try."""
    if isinstance(exc, TransientDeliveryError):
        return Retryable(str(exc), exc.retry_after)
    return None


def classify_http(status: int, body: str, what: str, headers: Any = None) -> None:
    """Raise the right DeliveryError for a non-2xx HTTP answer from ``what``."""
    if status < 300:
        return
    detail = f"{what} answered HTTP {status}: {body[:300]}"
    if status == 429 or status >= 500 or status == 408:
        raise TransientDeliveryError(detail, retry_after_from(headers))
    raise PermanentDeliveryError(detail)


@contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Map client exceptions (requests, simple_salesforce, smtplib, OSError) to DeliveryErrors."""
    try:
        yield
    except DeliveryError:
        raise
    except requests.RequestException as exc:
        response = getattr(exc, "response", None)
        if response is not None:
            classify_http(response.status_code, response.text, what, response.headers)
        raise TransientDeliveryError(f"{what} unreachable: {exc}") from exc
    except smtplib.SMTPResponseException as exc:
        message = f"{what} answered SMTP {exc.smtp_code}: {exc.smtp_error!r}"
        raise (TransientDeliveryError(message) if 400 <= exc.smtp_code < 500 else PermanentDeliveryError(message)) from exc
    except urllib3.exceptions.HTTPError as exc:  # clients on urllib3 directly (HubSpot's): a network failure
        raise TransientDeliveryError(f"{what} unreachable: {exc}") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentDeliveryError(f"{what} refused every recipient: {exc.recipients}") from exc
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError, TimeoutError) as exc:
        raise TransientDeliveryError(f"{what} unreachable: {exc}") from exc
    except Exception as exc:
        status = getattr(exc, "status", None)  # simple_salesforce.SalesforceError and friends
        if isinstance(status, int):
            content = getattr(exc, "content", "")
            headers = getattr(getattr(exc, "response", None), "headers", None)
            if status == 401:  # an expired session: the next dispatch logs in again
                raise TransientDeliveryError(f"{what} session expired (HTTP 401): {content}") from exc
            classify_http(status, str(content), what, headers)
        raise


# ----------------------------------------------------------------------------- e-mail
class EmailSender(Protocol):
    """Sends one e-mail; the Message-ID is fixed by the caller (dedupe key)."""

    def send(self, *, from_email: str, to: list[str], subject: str, html: str, message_id: str) -> None: ...


@dataclass
class SmtpEmailSender:
    """Plain SMTP with smtplib (a local relay, the sandbox)."""

    host: str
    port: int
    timeout: float = 10.0

    def send(self, *, from_email: str, to: list[str], subject: str, html: str, message_id: str) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = from_email, ", ".join(to), subject, message_id
        msg.set_content("This message is HTML; open it in an HTML-capable mail client.")
        msg.add_alternative(html, subtype="html")
        with translated_errors("SMTP server"), smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.send_message(msg)


@dataclass
class AirflowSmtpEmailSender:
    """E-mail through Airflow's SMTP provider hook and its connection."""

    conn_id: str = settings.SMTP_CONN_ID

    def send(self, *, from_email: str, to: list[str], subject: str, html: str, message_id: str) -> None:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with translated_errors("SMTP server"), SmtpHook(smtp_conn_id=self.conn_id) as hook:
            hook.send_email_smtp(
                to=to, subject=subject, html_content=html, from_email=from_email,
                custom_headers={"Message-ID": message_id},
            )


# ----------------------------------------------------------------------------- all clients
# One delivery (or one writeback call) tries 4 times, backing off from 0.5 s (capped at 30 s)
# and honouring a target's Retry-After up to 2 minutes, sleeping at most 5 minutes in all. A
# target still failing goes back to pending for the task's retry (dispatch) or fails the task.
DELIVERY_RETRY = RetryPolicy(attempts=4, base_delay=0.5, max_delay=30.0, max_retry_after=120.0, budget=300.0)


@dataclass
class DispatchClients:
    """The clients dispatch delivers with; a target left None cannot be dispatched to."""

    salesforce: Any = None  # simple_salesforce.Salesforce
    slack: Any = None  # slack_sdk.webhook.WebhookClient (SlackWebhookHook(...).client)
    email: EmailSender | None = None
    campaigns: Any = None  # actions.campaign_targets.CampaignTarget: Salesforce Campaigns or HubSpot lists
    retry: RetryPolicy = DELIVERY_RETRY
    sleep: Callable[[float], None] | None = None  # time.sleep unless a test wants to count waits

    def require(self, target: str) -> Any:
        """The client for ``target``, or a clear error naming the connection to configure."""
        client = {"salesforce": self.salesforce, "slack": self.slack, "email": self.email,
                  "campaigns": self.campaigns}.get(target)
        if client is None:
            conn = {"salesforce": settings.SALESFORCE_CONN_ID, "slack": settings.SLACK_CONN_ID,
                    "email": settings.SMTP_CONN_ID,
                    "campaigns": f"{settings.SALESFORCE_CONN_ID}' or '{settings.HUBSPOT_CONN_ID}"}.get(target, "?")
            raise PermanentDeliveryError(
                f"no client for target {target!r}; configure the Airflow connection {conn!r} and pass it in DispatchClients"
            )
        return client


def slack_client_from_airflow(conn_id: str = settings.SLACK_CONN_ID) -> Any:
    """slack_sdk's WebhookClient configured from the Airflow Slack incoming-webhook connection."""
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    return SlackWebhookHook(slack_webhook_conn_id=conn_id).client


def clients_from_airflow(targets: tuple[str, ...] = ("salesforce", "slack", "email", "campaigns")) -> DispatchClients:
    """Clients for ``targets`` from the project's Airflow connections (inside a task)."""
    clients = DispatchClients()
    if "salesforce" in targets:
        from customer_health.sources.salesforce import HealthSalesforceHook  # written alongside the extractor

        clients.salesforce = HealthSalesforceHook(settings.SALESFORCE_CONN_ID).get_conn()
    if "slack" in targets:
        clients.slack = slack_client_from_airflow()
    if "email" in targets:
        clients.email = AirflowSmtpEmailSender()
    if "campaigns" in targets:
        from customer_health.actions.campaign_targets import campaign_target_from_airflow

        clients.campaigns = campaign_target_from_airflow(clients.salesforce)
    return clients
