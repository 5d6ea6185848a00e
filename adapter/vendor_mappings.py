"""The vendor mapping files: which CRM field means what, for inbound translation and outbound connectors.

realm-config/vendors/<vendor>.json by default; a file of the same name in
KEYBRIDGE_VENDOR_MAPPING_DIR replaces it. See README "CRM vendors".
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .config import REPO_ROOT

DEFAULT_MAPPING_DIR = REPO_ROOT / "realm-config" / "vendors"
KINDS = ("lead", "contact", "account")  # the order a record's kind is decided in (lead's `when` first)


def load_mapping(override_dir: str, vendor: str) -> dict:
    """The vendor's mapping: KEYBRIDGE_VENDOR_MAPPING_DIR/<vendor>.json if present, else the default."""
    path = Path(override_dir) / f"{vendor}.json" if override_dir else None
    if path is None or not path.exists():
        path = DEFAULT_MAPPING_DIR / f"{vendor}.json"
    return _read_mapping(str(path), path.stat().st_mtime if path.exists() else 0)


@lru_cache(maxsize=32)
def _read_mapping(path: str, _mtime: float) -> dict:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"Vendor mapping {path} not found: set KEYBRIDGE_VENDOR_MAPPING_DIR to a directory holding it "
                         "(realm-config/vendors/ has one file per vendor)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"Vendor mapping {path} is not valid JSON ({exc}); fix the file") from None
    unknown = set(raw.get("kinds", {})) - set(KINDS)
    if unknown:
        raise ValueError(f"{path}: unknown kinds {sorted(unknown)}; use account, contact and lead")
    for kind, spec in raw.get("kinds", {}).items():
        if not spec.get("objects"):
            raise ValueError(f"{path}: kinds.{kind}.objects must list the CRM objects that are {kind}s")
        for rule in ("when", "left", "invite", "org_admin"):
            if rule in spec and not (isinstance(spec[rule], dict) and spec[rule].get("field")):
                raise ValueError(f"{path}: kinds.{kind}.{rule} needs a \"field\" (and \"values\")")
    return raw
