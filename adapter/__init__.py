"""Keybridge: CRM webhooks in, Keycloak operations, identity events back to the CRM."""
from __future__ import annotations

from flask import Flask

from .config import Settings


def create_app(config: dict | None = None) -> Flask:
    """The web application. `config` may hold KEYBRIDGE_SETTINGS (a Settings) or Flask keys."""
    from . import api, errors, logs, metrics, portal, webhooks
    from .runtime import Keybridge

    app = Flask(__name__)
    config = dict(config or {})
    settings = config.pop("KEYBRIDGE_SETTINGS", None) or Settings.from_env()
    app.config.update(config)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["keybridge"] = Keybridge(settings)
    logs.configure(settings)
    logs.init_app(app)

    errors.init_app(app)
    webhooks.init_app(app)
    api.init_app(app)
    portal.init_app(app)
    metrics.init_app(app)
    return app
