"""Inbound webhooks: one shared verify-and-store path, one small module per dialect."""
from __future__ import annotations

from flask import Flask

from . import crm, dialects, dynamics, espocrm, hubspot, keycloak_nudge, pipedrive, salesforce  # noqa: F401  (dialects register themselves)


def init_app(app: Flask) -> None:
    app.register_blueprint(crm.bp)
    app.register_blueprint(keycloak_nudge.bp)
    app.register_blueprint(dialects.bp)
    dialects.check_mappings(app.extensions["keybridge"].settings)
