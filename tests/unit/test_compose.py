"""docker-compose.yml, checked without Docker: valid against the Compose Specification's JSON
schema (a pinned copy in tests/fixtures/compose/), every adapter setting passed to web and
worker from .env, every `${VAR}` it reads documented, health checks where compose waits on
them, and images pinned to exact versions."""
from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import jsonschema
import pytest
import yaml

from adapter.config import OTHER_NAMES, Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SCHEMA = json.loads((REPO / "tests" / "fixtures" / "compose" / "compose-spec.json").read_text())
ENV_EXAMPLE = (REPO / ".env.example").read_text()
SERVICES = COMPOSE["services"]
ADAPTER_SERVICES = ("migrate", "web", "worker")
SETTINGS = ["KEYBRIDGE_" + f.name.upper() for f in fields(Settings)]
# Set to compose's own services, not read from .env (which scripts/dev reads too).
FIXED = {"KEYBRIDGE_DATABASE_URL": "postgresql+psycopg://keybridge:${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}@postgres:5432/keybridge",
         "KEYBRIDGE_KEYCLOAK_URL": "http://keycloak:8080"}
# The delegation client holds manage-realm: only the worker gets it.
WORKER_ONLY = {"KEYBRIDGE_KEYCLOAK_DELEGATION_CLIENT_ID", "KEYBRIDGE_KEYCLOAK_DELEGATION_CLIENT_SECRET"}
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# x.y.z (PostgreSQL's own releases are exact at x.y), optionally a -variant and a digest
EXACT_IMAGE = re.compile(r"^(postgres:\d+\.\d+|[a-z0-9./-]+:\d+\.\d+\.\d+)(-[a-z0-9.-]+)?(@sha256:[0-9a-f]{64})?$")


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def test_the_file_is_valid_against_the_compose_specification_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    errors = sorted(jsonschema.Draft7Validator(SCHEMA).iter_errors(COMPOSE), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_mistake():
    """The pinned schema really constrains services (a typo in a key or a bad condition is refused)."""
    broken = json.loads(json.dumps(COMPOSE))
    broken["services"]["worker"]["helthcheck"] = broken["services"]["worker"].pop("healthcheck")
    assert any("helthcheck" in e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(broken))
    broken = json.loads(json.dumps(COMPOSE))
    broken["services"]["web"]["depends_on"]["keycloak"]["condition"] = "service_ready"
    assert list(jsonschema.Draft7Validator(SCHEMA).iter_errors(broken))


@pytest.mark.parametrize("service", ["web", "worker"])
def test_every_adapter_setting_reaches_web_and_worker_from_env(service):
    env = environment(service)
    wanted = [name for name in SETTINGS if service == "worker" or name not in WORKER_ONLY]
    missing = [name for name in wanted if name not in env]
    assert not missing, f"docker-compose.yml does not pass {missing} to {service}: add them to x-adapter's environment"
    for name in wanted:
        if name in FIXED:
            assert env[name] == FIXED[name]
            continue
        match = REFERENCE.fullmatch(env[name])
        assert match and match.group(1) == name and match.group(2) in (":-", ":?"), (
            f"{service}: {name} should be ${{{name}:-}} (or ${{{name}:?why}} when required), read from .env; it is {env[name]!r}")
    unknown = [n for n in env if n.startswith("KEYBRIDGE_") and n not in SETTINGS and n not in OTHER_NAMES]
    assert not unknown, f"{service}: {unknown} are no Keybridge settings (the adapter would warn about them)"


def test_the_web_process_never_gets_the_delegation_clients_secret():
    assert not WORKER_ONLY & set(environment("web")) and not WORKER_ONLY & set(environment("migrate"))


def test_every_setting_and_every_variable_compose_reads_is_documented_in_env_example():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE, re.M))
    undocumented_settings = [n for n in SETTINGS if n not in documented]
    assert not undocumented_settings, f".env.example does not document {undocumented_settings}"
    text = (REPO / "docker-compose.yml").read_text()
    read = {m.group(1) for m in REFERENCE.finditer(text)}
    assert not read - documented, f"docker-compose.yml reads {sorted(read - documented)}, which .env.example does not document"
    required = {m.group(1) for m in REFERENCE.finditer(text) if m.group(2) == ":?"}
    for name in required:
        assert re.search(rf"^{name}=\s*$", ENV_EXAMPLE, re.M), f"required {name} should appear in .env.example as an empty NAME= line to fill in"


def test_every_placeholder_of_the_realm_file_is_given_to_keycloak():
    realm = (REPO / "realm-config" / "customers-realm.json").read_text()
    needed = {name for name, default in re.findall(r"\$\{([A-Z][A-Z0-9_]+)(:[^}]*)?\}", realm) if not default}
    assert needed and not needed - set(environment("keycloak")), f"keycloak lacks {sorted(needed - set(environment('keycloak')))}"


def test_services_wait_only_on_health_checks_that_exist_and_form_no_cycle():
    for name, service in SERVICES.items():
        for target, how in service.get("depends_on", {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            if how["condition"] == "service_healthy":
                check = SERVICES[target].get("healthcheck", {})
                assert check.get("test") and not check.get("disable"), f"{name} waits for {target} to be healthy, which has no health check"
            if how["condition"] == "service_completed_successfully":
                assert SERVICES[target].get("restart") == "no", f"{target} must run once (restart: 'no') for {name} to wait on it"

    def visit(name, path):
        assert name not in path, f"depends_on cycle: {' -> '.join([*path, name])}"
        for target in SERVICES[name].get("depends_on", {}):
            visit(target, [*path, name])

    for name in SERVICES:
        visit(name, [])


def test_every_long_running_service_has_a_health_check():
    for name, service in SERVICES.items():
        if service.get("restart") == "no":
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert {"interval", "timeout", "retries"} <= set(check), f"{name}: give its health check interval, timeout and retries"


def test_the_health_checks_ask_the_right_question():
    postgres = SERVICES["postgres"]["healthcheck"]["test"]
    assert postgres[:4] == ["CMD", "pg_isready", "-h", "127.0.0.1"], "pg_isready over TCP, so the init scripts' temporary server does not count"
    assert "/readyz" in " ".join(SERVICES["web"]["healthcheck"]["test"])
    assert SERVICES["worker"]["healthcheck"]["test"] == ["CMD", "keybridge", "health", "worker"]
    # readiness needs a live worker: the worker must not wait for web
    assert "web" not in SERVICES["worker"].get("depends_on", {})


def test_the_worker_health_check_is_a_real_command():
    from click.testing import CliRunner

    from adapter import cli

    result = CliRunner().invoke(cli.main, SERVICES["worker"]["healthcheck"]["test"][2:] + ["--help"])
    assert result.exit_code == 0 and "heartbeat" in result.output


def test_images_are_pinned_to_exact_versions_and_built_ones_from_pinned_bases():
    for name, service in SERVICES.items():
        if "build" in service:
            context = REPO / (service["build"]["context"] if isinstance(service["build"], dict) else service["build"])
            dockerfile = context / (service["build"].get("dockerfile", "Dockerfile") if isinstance(service["build"], dict) else "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
            bases = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M)
            assert bases, f"{dockerfile} has no FROM"
            for base in bases:
                assert EXACT_IMAGE.match(base), f"{dockerfile}: FROM {base} is not pinned to an exact version (x.y.z)"
            assert ":" not in service.get("image", "") or not service["image"].endswith(":latest")
        else:
            image = service["image"]
            assert EXACT_IMAGE.match(image), f"{name}: image {image} is not pinned to an exact version (x.y.z, optionally @sha256:...)"
        assert "latest" not in str(service.get("image", ""))


def test_the_keycloak_image_builds_the_extension_into_providers():
    dockerfile = (REPO / SERVICES["keycloak"]["build"]["context"] / "Dockerfile").read_text()
    pom = (REPO / "keycloak-extension" / "pom.xml").read_text()
    final_name = re.search(r"<finalName>([^<]+)</finalName>", pom).group(1)
    version = re.search(r"<keycloak.version>([^<]+)</keycloak.version>", pom).group(1)
    assert f"/src/target/{final_name}.jar /opt/keycloak/providers/" in dockerfile
    assert f"FROM quay.io/keycloak/keycloak:{version}\n" in dockerfile
    kc_version = re.search(r"^KC_VERSION=(\S+)", (REPO / "scripts" / "keycloak.sh").read_text(), re.M).group(1)
    assert version == kc_version, "keycloak.version in pom.xml and KC_VERSION in scripts/keycloak.sh must agree"


def test_the_files_compose_mounts_exist():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in COMPOSE.get("volumes", {}), f"{name} uses volume {source}, which is not declared"
