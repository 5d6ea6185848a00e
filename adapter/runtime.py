"""What a Keybridge process holds: settings, storage, the Keycloak gateway, the role mapping, the connector."""
from __future__ import annotations

from functools import cached_property

from . import connectors
from .config import Settings
from .db import Database, utcnow
from .keycloak import KeycloakGateway
from .roles import RoleMapping


class Keybridge:
    def __init__(self, settings: Settings, keycloak: KeycloakGateway | None = None,
                 delegation_keycloak: KeycloakGateway | None = None):
        self.settings = settings
        self.db = Database(settings.database_url)
        self.db.create_all()
        # What "now" is for decisions by the clock (invitation expiry and reminders): tests move it
        # (kb.clock = lambda: ...) instead of waiting days.
        self.clock = utcnow
        if keycloak is not None:
            self.keycloak = keycloak
        if delegation_keycloak is not None:
            self.delegation_keycloak = delegation_keycloak

    def now(self):
        """Naive UTC now, as `clock` says."""
        return self.clock()

    @cached_property
    def keycloak(self) -> KeycloakGateway:
        return KeycloakGateway.from_settings(self.settings)

    @cached_property
    def delegation_keycloak(self) -> KeycloakGateway | None:
        """The gateway of the delegation client (manage-realm), used only to write admin permissions;
        None when KEYBRIDGE_KEYCLOAK_DELEGATION_CLIENT_SECRET is unset (delegation is skipped)."""
        settings = self.settings
        if not settings.keycloak_delegation_client_secret:
            return None
        return KeycloakGateway(settings.keycloak_url, settings.keycloak_realm, settings.keycloak_delegation_client_id,
                               settings.keycloak_delegation_client_secret, settings.keycloak_timeout_seconds, 2)

    @cached_property
    def roles(self) -> RoleMapping:
        return RoleMapping.load(self.settings.role_mapping)

    @cached_property
    def connector(self):
        return connectors.from_settings(self.settings)
