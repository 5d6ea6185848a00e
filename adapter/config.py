"""Settings read from the environment (KEYBRIDGE_*), validated once at start-up.

Every setting has one name, documented in `.env.example`; a bad value fails
with an error that names the variable and says what to put there.
"""
from __future__ import annotations

import base64
import binascii
import difflib
import functools
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)

PUBLIC_WEBMAIL_DOMAINS = (
    "gmail.com googlemail.com yahoo.com yahoo.co.uk ymail.com hotmail.com hotmail.co.uk "
    "outlook.com live.com msn.com aol.com icloud.com me.com mac.com gmx.com gmx.de gmx.net "
    "web.de mail.com proton.me protonmail.com yandex.com yandex.ru zoho.com qq.com 163.com "
    "mail.ru fastmail.com tutanota.com hey.com"
).split()


SESSION_SECRET_HOWTO = ("generate one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'` "
                        "and set KEYBRIDGE_SESSION_SECRET in .env (the same value for every web process)")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""


# KEYBRIDGE_* names read by something other than Settings (the CLI's realm apply, the
# test stack, the fuzz suite, Keycloak's nudge listener, scripts/test): not reported as unknown.
OTHER_NAMES = {"KEYBRIDGE_SETTINGS", "KEYBRIDGE_REALM_ADMIN_USER", "KEYBRIDGE_REALM_ADMIN_PASSWORD",
               "KEYBRIDGE_NUDGE_URL", "KEYBRIDGE_SKIP_JAVA_TESTS", "KEYBRIDGE_PORTAL_URL"}
OTHER_PREFIXES = ("KEYBRIDGE_TEST_", "KEYBRIDGE_FUZZ_", "KEYBRIDGE_BENCH_")
SECRET_WORDS = ("secret", "token", "password")


def read_secret_files(env) -> dict[str, str]:
    """`KEYBRIDGE_X_FILE=/path` read as `KEYBRIDGE_X` (docker and Kubernetes secrets).

    Raises ConfigError when the file cannot be read, or when both forms are set.
    """
    out = dict(env)
    for name, path in env.items():
        if not (name.startswith("KEYBRIDGE_") and name.endswith("_FILE")) or not path:
            continue
        target = name[: -len("_FILE")]
        if env.get(target):
            raise ConfigError(f"both {target} and {name} are set; keep one (the _FILE form reads the value from a file).")
        try:
            out[target] = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}={path}: cannot read the file ({exc.strerror}); mount the secret there or unset {name}.") from None
        del out[name]
    return out


def report_unknown_names(env, known: set[str]) -> list[str]:
    """Warn about KEYBRIDGE_* variables no setting reads (a typo leaves a setting at its default)."""
    unknown = sorted(n for n in env if n.startswith("KEYBRIDGE_") and n not in known and n not in OTHER_NAMES
                     and not n.startswith(OTHER_PREFIXES))
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else "; see .env.example for the settings there are"
        log.warning("%s is not a Keybridge setting and is ignored%s", name, hint)
    return unknown


def _is_secret(name: str) -> bool:
    return any(word in name for word in SECRET_WORDS)


@dataclass
class Settings:
    database_url: str = f"sqlite:///{REPO_ROOT / '.data' / 'keybridge.db'}"
    webhook_secrets: list[str] = field(default_factory=list)
    webhook_tolerance_seconds: int = 300
    max_body_bytes: int = 5 * 1024 * 1024
    keycloak_url: str = "http://localhost:8080"
    keycloak_realm: str = "customers"
    keycloak_client_id: str = "keybridge-adapter"
    keycloak_client_secret: str = ""
    # The second client, used only to write the org admins' permissions (it holds manage-realm);
    # without its secret delegation is skipped (logged and audited).
    keycloak_delegation_client_id: str = "keybridge-delegation"
    keycloak_delegation_client_secret: str = ""
    keycloak_timeout_seconds: int = 20
    keycloak_concurrency: int = 8
    operator_token: str = ""
    crm_events_url: str = ""
    crm_events_secret: str = ""
    role_mapping: str = str(REPO_ROOT / "realm-config" / "role-mapping.json")
    lead_webmail_policy: str = "refuse"
    public_webmail_domains: list[str] = field(default_factory=lambda: list(PUBLIC_WEBMAIL_DOMAINS))
    invite_redirect_uri: str = ""
    # The adapter's URL as browsers reach it (https://keybridge.example.com): invited people land on its
    # /portal/welcome after accepting (adapter/portal/welcome.py); unset, they land where Keycloak sends them.
    public_url: str = ""
    invite_expires_in_days: int = 7
    invite_reminder_days_before: int = 2  # one reminder this many days before an invitation expires; 0: none
    events_poll_seconds: float = 2.0
    nudge_secret: str = ""
    events_start: str = "beginning"
    activity_report_seconds: int = 3600
    converge_sweep_seconds: int = 3600
    job_retry_window_seconds: int = 24 * 3600
    outbox_retry_window_seconds: int = 24 * 3600
    retry_max_delay_seconds: int = 300
    job_lease_seconds: float = 30.0
    job_max_crashes: int = 3
    worker_threads: int = 0  # 0: 4 on PostgreSQL, 1 on SQLite
    batch_chunk_size: int = 25  # contact invitations of a batch handled per job (adapter/handlers/batches.py)
    # CRM vendors (README "CRM vendors"): inbound dialects and outbound connectors
    vendor_mapping_dir: str = ""
    vendor_max_age_seconds: int = 24 * 3600
    hubspot_client_secret: str = ""
    hubspot_webhook_url: str = ""
    hubspot_access_token: str = ""
    hubspot_api_url: str = "https://api.hubapi.com"
    salesforce_organization_ids: list[str] = field(default_factory=list)
    salesforce_endpoint_tokens: list[str] = field(default_factory=list)
    salesforce_instance_url: str = ""
    salesforce_access_token: str = ""
    salesforce_username: str = ""
    salesforce_password: str = ""
    salesforce_security_token: str = ""
    salesforce_consumer_key: str = ""
    salesforce_consumer_secret: str = ""
    salesforce_domain: str = "login"
    salesforce_api_version: str = "59.0"
    dynamics_secrets: list[str] = field(default_factory=list)
    dynamics_url: str = ""
    dynamics_tenant_id: str = ""
    dynamics_client_id: str = ""
    dynamics_client_secret: str = ""
    dynamics_authority_url: str = "https://login.microsoftonline.com"
    pipedrive_username: str = ""
    pipedrive_password: str = ""
    pipedrive_api_url: str = ""
    pipedrive_api_token: str = ""
    espocrm_webhook_secrets: list[str] = field(default_factory=list)
    espocrm_url: str = ""
    espocrm_api_token: str = ""
    connector: str = ""
    portal_enabled: bool = True
    dashboard_enabled: bool = True
    session_secret: str = ""
    session_cookie_secure: bool = True
    portal_session_seconds: int = 8 * 3600
    trusted_proxies: int = 0
    worker_metrics_port: int = 0
    log_level: str = "INFO"
    log_format: str = "text"

    def __repr__(self) -> str:
        """Every setting, with secrets, tokens, passwords and the database password masked."""
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if _is_secret(f.name) and value:
                value = "***"
            elif f.name == "database_url":
                value = _mask_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        """Build settings from KEYBRIDGE_* variables, then apply `overrides`.

        Raises ConfigError naming the variable when a value cannot be used.
        """
        env = read_secret_files(os.environ if environ is None else environ)
        values: dict = {}
        report_unknown_names(env, {"KEYBRIDGE_" + f.name.upper() for f in fields(cls)})
        for f in fields(cls):
            name = "KEYBRIDGE_" + f.name.upper()
            if name not in env or env[name] == "":
                continue
            raw = env[name]
            default = getattr(cls(), f.name)
            try:
                if isinstance(default, bool):
                    values[f.name] = raw.lower() in ("1", "true", "yes", "on")
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                elif isinstance(default, float):
                    values[f.name] = float(raw)
                elif isinstance(default, list):
                    values[f.name] = [p for p in raw.replace(",", " ").split() if p]
                else:
                    values[f.name] = raw
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a valid {type(default).__name__}; fix it in your environment or .env") from None
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.lead_webmail_policy not in ("refuse", "allow"):
            raise ConfigError("KEYBRIDGE_LEAD_WEBMAIL_POLICY must be 'refuse' or 'allow'")
        for position, secret in enumerate(self.webhook_secrets, 1):
            _check_whsec("KEYBRIDGE_WEBHOOK_SECRETS", secret, position if len(self.webhook_secrets) > 1 else None)
        if self.crm_events_secret:
            _check_whsec("KEYBRIDGE_CRM_EVENTS_SECRET", self.crm_events_secret)
        if self.job_lease_seconds < 1:
            raise ConfigError("KEYBRIDGE_JOB_LEASE_SECONDS must be at least 1 (the running worker renews it every third of it; "
                              "it is how long a job waits after its worker died)")
        if self.batch_chunk_size < 1 or self.batch_chunk_size > 1000:
            raise ConfigError("KEYBRIDGE_BATCH_CHUNK_SIZE must be between 1 and 1000 (contact invitations of a batch handled "
                              "per job; 25 is a good size)")
        if self.job_max_crashes < 1:
            raise ConfigError("KEYBRIDGE_JOB_MAX_CRASHES must be at least 1 (how many worker crashes a job may cause before it is a dead letter)")
        if self.nudge_secret:
            _check_whsec("KEYBRIDGE_NUDGE_SECRET", self.nudge_secret)
        if self.log_format not in ("text", "json"):
            raise ConfigError("KEYBRIDGE_LOG_FORMAT must be 'text' or 'json'")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError("KEYBRIDGE_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR")
        if self.connector not in ("", "generic", "hubspot", "salesforce", "dynamics", "pipedrive", "espocrm"):
            raise ConfigError("KEYBRIDGE_CONNECTOR must be generic, hubspot, salesforce, dynamics, pipedrive or espocrm (or unset: generic when KEYBRIDGE_CRM_EVENTS_URL is set)")
        if self.connector == "dynamics" and not (self.dynamics_url and self.dynamics_tenant_id and self.dynamics_client_id and self.dynamics_client_secret):
            raise ConfigError("KEYBRIDGE_CONNECTOR=dynamics needs KEYBRIDGE_DYNAMICS_URL (https://<org>.crm.dynamics.com), KEYBRIDGE_DYNAMICS_TENANT_ID, "
                              "KEYBRIDGE_DYNAMICS_CLIENT_ID and KEYBRIDGE_DYNAMICS_CLIENT_SECRET (an app registration that is an application user)")
        if self.connector == "pipedrive" and not (self.pipedrive_api_url and self.pipedrive_api_token):
            raise ConfigError("KEYBRIDGE_CONNECTOR=pipedrive needs KEYBRIDGE_PIPEDRIVE_API_URL (https://<company>.pipedrive.com) and KEYBRIDGE_PIPEDRIVE_API_TOKEN")
        if self.connector == "espocrm" and not (self.espocrm_url and self.espocrm_api_token):
            raise ConfigError("KEYBRIDGE_CONNECTOR=espocrm needs KEYBRIDGE_ESPOCRM_URL and KEYBRIDGE_ESPOCRM_API_TOKEN (an API user's key)")
        if self.connector == "hubspot" and not self.hubspot_access_token:
            raise ConfigError("KEYBRIDGE_CONNECTOR=hubspot needs KEYBRIDGE_HUBSPOT_ACCESS_TOKEN (a private app's token with crm.objects.contacts.write)")
        if self.connector == "salesforce" and not ((self.salesforce_instance_url and self.salesforce_access_token)
                                                   or (self.salesforce_username and self.salesforce_password)
                                                   or (self.salesforce_consumer_key and self.salesforce_consumer_secret)):
            raise ConfigError("KEYBRIDGE_CONNECTOR=salesforce needs KEYBRIDGE_SALESFORCE_INSTANCE_URL + _ACCESS_TOKEN, or _USERNAME + "
                              "_PASSWORD (+ _SECURITY_TOKEN), or _CONSUMER_KEY + _CONSUMER_SECRET with _DOMAIN")
        for entry in self.espocrm_webhook_secrets:
            if entry.count(":") < 2:
                raise ConfigError("KEYBRIDGE_ESPOCRM_WEBHOOK_SECRETS: each entry is WEBHOOK_ID:EVENT:SECRET_KEY (e.g. 6571a0c1d2:Contact.update:1f0e...), as shown at Administration > Webhooks")
        if self.events_start not in ("beginning", "now"):
            raise ConfigError("KEYBRIDGE_EVENTS_START must be 'beginning' or 'now'")
        if self.session_secret and len(self.session_secret) < 32:
            raise ConfigError(f"KEYBRIDGE_SESSION_SECRET is too short ({len(self.session_secret)} characters, at least 32); "
                              f"{SESSION_SECRET_HOWTO}")
        if self.session_secret and self.session_secret == self.keycloak_client_secret:
            raise ConfigError(f"KEYBRIDGE_SESSION_SECRET must not be the Keycloak client secret; {SESSION_SECRET_HOWTO}")
        if self.trusted_proxies < 0:
            raise ConfigError("KEYBRIDGE_TRUSTED_PROXIES is the number of proxies in front of the adapter (0 when none)")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"KEYBRIDGE_PUBLIC_URL={self.public_url!r} must be the adapter's URL as browsers reach it, "
                              "starting with https:// (e.g. https://keybridge.example.com)")
        if self.portal_session_seconds <= 0:
            raise ConfigError("KEYBRIDGE_PORTAL_SESSION_SECONDS must be a positive number of seconds (default 28800)")
        if not 1 <= self.invite_expires_in_days <= 90:
            raise ConfigError("KEYBRIDGE_INVITE_EXPIRES_IN_DAYS must be between 1 and 90 days (default 7), as expires_in_days of an invitation")
        if not 0 <= self.invite_reminder_days_before < 90:
            raise ConfigError("KEYBRIDGE_INVITE_REMINDER_DAYS_BEFORE is how many days before an invitation expires its one reminder "
                              "goes out: 0 (no reminder) to 89 (default 2)")


SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24  # the Standard Webhooks spec: secrets of 24 to 64 random bytes
MAKE_SECRET = "make one with `echo whsec_$(openssl rand -base64 32)`"


@functools.lru_cache(maxsize=64)
def whsec_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; raises ValueError if it does not decode.

    Cached: every signed request decodes each configured secret (a failure is not cached)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # unpadded base64 is common (the reference libraries accept it): pad, then decode strictly
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not base64") from None


def _check_whsec(variable: str, secret: str, position: int | None = None) -> None:
    """Refuse a webhook secret that would fail every request later: not whsec_, not base64, too short.

    The message names the variable (and which secret of a list), never the secret itself.
    """
    which = f"{variable} (secret {position})" if position else variable
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigError(f"{which} must look like whsec_<base64>, as in the Standard Webhooks spec; {MAKE_SECRET}")
    try:
        key = whsec_key(secret)
    except ValueError:
        raise ConfigError(f"{which}: the part after whsec_ is not valid base64; {MAKE_SECRET}") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(f"{which} holds {len(key)} bytes after base64 decoding; at least {MIN_SECRET_BYTES} are needed; {MAKE_SECRET}")


def _mask_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 — not a URL SQLAlchemy reads: show nothing of it
        return "***"
