"""Inbound webhooks: one shared verify-and-store path, one small module per dialect."""
from __future__ import annotations

from flask import Flask

from . import crm, dialects, dynamics, espocrm, hubspot, keycloak_nudge, pipedrive, salesforce  # noqa: F401  (dialects register themselves)
from .fast_path import CrmWebhookFastPath


def init_app(app: Flask) -> None:
    kb = app.extensions["keybridge"]
    app.wsgi_app = CrmWebhookFastPath(app.wsgi_app, kb, kb.settings.max_body_bytes)  # success without Flask's machinery
    app.register_blueprint(crm.bp)
    app.register_blueprint(keycloak_nudge.bp)
    app.register_blueprint(dialects.bp)
    dialects.check_mappings(app.extensions["keybridge"].settings)
