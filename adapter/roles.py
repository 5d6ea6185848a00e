"""CRM role names -> business roles (realm roles), from realm-config/role-mapping.json."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RoleMapping:
    business_roles: frozenset[str]
    default_business_roles: frozenset[str]
    crm_roles: dict[str, frozenset[str]]  # lower-cased CRM role name -> business roles

    @classmethod
    def load(cls, path: str | Path) -> "RoleMapping":
        """Read the mapping; raises ValueError naming the file and the problem."""
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ValueError(f"Role mapping {path} not found; set KEYBRIDGE_ROLE_MAPPING to realm-config/role-mapping.json") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"Role mapping {path} is not valid JSON ({exc}); fix the file") from None
        business = frozenset(raw.get("business_roles", []))
        crm = {name.strip().lower(): frozenset(roles) for name, roles in raw.get("crm_roles", {}).items()}
        unknown = {r for roles in crm.values() for r in roles} | set(raw.get("default_business_roles", []))
        unknown -= business
        if unknown:
            raise ValueError(f"{path}: {sorted(unknown)} are mapped but not listed in business_roles")
        return cls(business, frozenset(raw.get("default_business_roles", [])), crm)

    def business_roles_for(self, crm_roles: list[str] | None) -> set[str]:
        """Business roles for these CRM role names; the defaults when none maps (unknown names are ignored)."""
        mapped: set[str] = set()
        for name in crm_roles or []:
            mapped |= self.crm_roles.get(name.strip().lower(), frozenset())
        return mapped or set(self.default_business_roles)

    def unmapped(self, crm_roles: list[str] | None) -> list[str]:
        return [n for n in crm_roles or [] if n.strip().lower() not in self.crm_roles]
