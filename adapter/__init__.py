"""Keybridge: CRM webhooks in, Keycloak operations, identity events back to the CRM."""
from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Settings


def create_app(config: dict | None = None) -> Flask:
    """The web application. `config` may hold KEYBRIDGE_SETTINGS (a Settings) or Flask keys.

    Outside tests (or with KEYBRIDGE_STARTUP_CHECKS true) the readiness checks run once at
    start and each failure is logged as an ERROR, e.g. a Keycloak client secret that is refused.
    """
    from . import api, dashboard, docs, errors, health, logs, metrics, portal, webhooks
    from .runtime import Keybridge

    app = Flask(__name__)
    config = dict(config or {})
    settings = config.pop("KEYBRIDGE_SETTINGS", None) or Settings.from_env()
    app.config.update(config)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["keybridge"] = Keybridge(settings)
    if settings.trusted_proxies:
        # Behind N proxies: scheme, host, port, prefix and client address as the outermost one saw them.
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)
    logs.configure(settings)
    logs.init_app(app)

    errors.init_app(app)
    health.init_app(app)
    docs.init_app(app)
    webhooks.init_app(app)
    api.init_app(app)
    portal.init_app(app)
    dashboard.init_app(app)
    metrics.init_app(app)
    if app.config.get("KEYBRIDGE_STARTUP_CHECKS", not app.config.get("TESTING")):
        health.log_startup_problems(app.extensions["keybridge"], "web")
    return app
