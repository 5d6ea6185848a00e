"""Settings from the environment and the CRM-role mapping: mistakes are named so an operator can fix them."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from adapter.cli import main as keybridge_cli
from adapter.config import REPO_ROOT, ConfigError, Settings
from adapter.roles import RoleMapping

GOOD_SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLWtleWJyaWRnZS10ZXN0cw=="
SECOND_SECRET = "whsec_" + "b3RoZXItc2VjcmV0LWZvci1yb3RhdGlvbi10ZXN0cw=="
REALM_MAPPING = REPO_ROOT / "realm-config" / "role-mapping.json"


# -- settings ---------------------------------------------------------------------------

def test_settings_are_read_from_keybridge_variables():
    s = Settings.from_env({
        "KEYBRIDGE_DATABASE_URL": "sqlite:///tmp/x.db",
        "KEYBRIDGE_WEBHOOK_SECRETS": f"{GOOD_SECRET}, {SECOND_SECRET}",
        "KEYBRIDGE_JOB_RETRY_WINDOW_SECONDS": "600",
        "KEYBRIDGE_EVENTS_POLL_SECONDS": "0.5",
        "KEYBRIDGE_LEAD_WEBMAIL_POLICY": "allow",
        "KEYBRIDGE_PUBLIC_WEBMAIL_DOMAINS": "gmail.com web.de",
        "KEYBRIDGE_OPERATOR_TOKEN": "",  # empty means unset
        "OTHER_APP_SETTING": "ignored",
    })
    assert s.database_url == "sqlite:///tmp/x.db"
    assert s.webhook_secrets == [GOOD_SECRET, SECOND_SECRET]
    assert (s.job_retry_window_seconds, s.events_poll_seconds) == (600, 0.5)
    assert s.lead_webmail_policy == "allow"
    assert s.public_webmail_domains == ["gmail.com", "web.de"]
    assert s.operator_token == ""


def test_defaults_refuse_webmail_leads_and_use_the_customers_realm():
    s = Settings.from_env({})
    assert (s.lead_webmail_policy, s.keycloak_realm) == ("refuse", "customers")
    assert "gmail.com" in s.public_webmail_domains


@pytest.mark.parametrize("variable, value", [
    ("KEYBRIDGE_JOB_RETRY_WINDOW_SECONDS", "a day"),
    ("KEYBRIDGE_MAX_BODY_BYTES", "5MB"),
    ("KEYBRIDGE_EVENTS_POLL_SECONDS", "fast"),
])
def test_a_value_of_the_wrong_type_is_an_error_naming_the_variable_and_value(variable, value):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    assert variable in str(error.value) and repr(value) in str(error.value)


@pytest.mark.parametrize("variable, value, hint", [
    ("KEYBRIDGE_LEAD_WEBMAIL_POLICY", "sometimes", "'refuse' or 'allow'"),
    ("KEYBRIDGE_WEBHOOK_SECRETS", "plain-secret", "whsec_"),
    ("KEYBRIDGE_WEBHOOK_SECRETS", f"{GOOD_SECRET} not-a-whsec", "whsec_"),
    ("KEYBRIDGE_CRM_EVENTS_SECRET", "c2VjcmV0", "whsec_"),
    ("KEYBRIDGE_EVENTS_START", "yesterday", "'beginning' or 'now'"),
])
def test_a_value_outside_its_choices_is_an_error_naming_the_variable_and_the_fix(variable, value, hint):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    assert variable in str(error.value) and hint in str(error.value)


def test_overrides_are_validated_too():
    with pytest.raises(ConfigError, match="KEYBRIDGE_LEAD_WEBMAIL_POLICY"):
        Settings.from_env({}, lead_webmail_policy="whatever")


def test_the_command_line_reports_a_bad_setting_instead_of_a_traceback(tmp_path):
    env = {"KEYBRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'kb.db'}", "KEYBRIDGE_LEAD_WEBMAIL_POLICY": "sometimes"}
    result = CliRunner().invoke(keybridge_cli, ["dead-letters", "list"], env=env)
    assert result.exit_code == 1
    assert "KEYBRIDGE_LEAD_WEBMAIL_POLICY" in result.output and "Traceback" not in result.output


# -- role mapping --------------------------------------------------------------------------

@pytest.fixture
def mapping() -> RoleMapping:
    return RoleMapping.load(REALM_MAPPING)


def write_mapping(tmp_path, raw: dict):
    path = tmp_path / "role-mapping.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("crm_role", ["Buyer", "buyer", "BUYER", "  Buyer "])
def test_crm_role_names_map_whatever_their_case_and_spacing(mapping, crm_role):
    assert mapping.business_roles_for([crm_role]) == {"buyer"}


def test_several_crm_roles_give_the_union_of_their_business_roles(mapping):
    assert mapping.business_roles_for(["Decision Maker", "Billing Admin", "Technical Contact"]) == {"buyer", "billing_admin", "technical_contact"}


@pytest.mark.parametrize("crm_roles", [None, [], ["Intern"], ["intern", "Janitor"]])
def test_a_contact_without_a_mapped_role_gets_the_default_business_roles(mapping, crm_roles):
    assert mapping.business_roles_for(crm_roles) == {"member"}


def test_unknown_crm_roles_beside_a_known_one_are_ignored_and_reported(mapping):
    assert mapping.business_roles_for(["Buyer", "Intern"]) == {"buyer"}
    assert mapping.unmapped(["Buyer", "Intern", " janitor "]) == ["Intern", " janitor "]


def test_every_business_role_of_the_mapping_is_a_realm_role_of_the_customers_realm(mapping):
    realm = json.loads((REPO_ROOT / "realm-config" / "customers-realm.json").read_text())
    realm_roles = {r["name"] for r in realm["roles"]["realm"]}
    assert mapping.business_roles <= realm_roles
    assert {"lead", "org_admin"} <= realm_roles  # the roles the adapter itself hands out


def test_a_mapping_to_an_undeclared_business_role_is_rejected_naming_it(tmp_path):
    path = write_mapping(tmp_path, {"business_roles": ["member", "buyer"], "default_business_roles": ["member"],
                                    "crm_roles": {"Buyer": ["buyer"], "Boss": ["superuser"]}})
    with pytest.raises(ValueError) as error:
        RoleMapping.load(path)
    assert "superuser" in str(error.value) and str(path) in str(error.value)


def test_an_undeclared_default_business_role_is_rejected(tmp_path):
    path = write_mapping(tmp_path, {"business_roles": ["buyer"], "default_business_roles": ["member"], "crm_roles": {}})
    with pytest.raises(ValueError, match="member"):
        RoleMapping.load(path)


def test_a_missing_mapping_file_says_which_setting_to_fix(tmp_path):
    with pytest.raises(ValueError, match="KEYBRIDGE_ROLE_MAPPING"):
        RoleMapping.load(tmp_path / "nowhere.json")


@pytest.mark.parametrize("variable, value, hint", [
    ("KEYBRIDGE_WEBHOOK_SECRETS", "whsec_", "at least 24"),
    ("KEYBRIDGE_WEBHOOK_SECRETS", "whsec_c2VjcmV0", "at least 24"),
    ("KEYBRIDGE_WEBHOOK_SECRETS", "whsec_%%%not-base64%%%", "not valid base64"),
    ("KEYBRIDGE_WEBHOOK_SECRETS", f"{GOOD_SECRET} whsec_", "secret 2"),
    ("KEYBRIDGE_CRM_EVENTS_SECRET", "whsec_", "at least 24"),
])
def test_a_webhook_secret_that_cannot_sign_is_refused_at_start_saying_how_to_make_one(variable, value, hint):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    message = str(error.value)
    assert variable in message and hint in message and "openssl rand -base64 32" in message
    assert "c2VjcmV0" not in message and "not-base64" not in message  # the secret itself is never echoed


def test_an_unpadded_base64_secret_is_accepted_as_the_reference_libraries_do():
    assert Settings.from_env({"KEYBRIDGE_WEBHOOK_SECRETS": GOOD_SECRET.rstrip("=")}).webhook_secrets

# -- configuration that catches mistakes ---------------------------------------------

def test_a_misspelt_setting_is_reported_with_the_name_it_resembles(caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="adapter.config"):
        Settings.from_env({"KEYBRIDGE_WEBHOK_SECRETS": "whsec_x", "KEYBRIDGE_TEST_STACK": "ci",
                           "KEYBRIDGE_REALM_ADMIN_USER": "admin"})
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["KEYBRIDGE_WEBHOK_SECRETS is not a Keybridge setting and is ignored; "
                        "did you mean KEYBRIDGE_WEBHOOK_SECRETS?"]


def test_secrets_are_read_from_files(tmp_path):
    secret_file = tmp_path / "operator_token"
    secret_file.write_text("from-a-file\n")
    settings = Settings.from_env({"KEYBRIDGE_OPERATOR_TOKEN_FILE": str(secret_file)})
    assert settings.operator_token == "from-a-file"


def test_a_secret_file_that_cannot_be_read_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="KEYBRIDGE_OPERATOR_TOKEN_FILE=.*cannot read the file"):
        Settings.from_env({"KEYBRIDGE_OPERATOR_TOKEN_FILE": str(tmp_path / "missing")})


def test_a_secret_given_twice_is_refused(tmp_path):
    secret_file = tmp_path / "token"
    secret_file.write_text("a")
    with pytest.raises(ConfigError, match="both KEYBRIDGE_OPERATOR_TOKEN and KEYBRIDGE_OPERATOR_TOKEN_FILE"):
        Settings.from_env({"KEYBRIDGE_OPERATOR_TOKEN": "b", "KEYBRIDGE_OPERATOR_TOKEN_FILE": str(secret_file)})


def test_no_secret_appears_in_the_settings_repr():
    settings = Settings.from_env({"KEYBRIDGE_OPERATOR_TOKEN": "op-token-value",
                                  "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET": "client-secret-value",
                                  "KEYBRIDGE_DATABASE_URL": "postgresql+psycopg://kb:db-password@db/kb"})
    text = repr(settings) + str(settings) + f"{settings}"
    for secret in ("op-token-value", "client-secret-value", "db-password"):
        assert secret not in text
    assert "keycloak_url='http://localhost:8080'" in text
