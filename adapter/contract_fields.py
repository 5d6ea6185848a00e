"""Field types of the native wire format, strict enough that the OpenAPI document can say exactly
what they accept (adapter/openapi.py states each rule as a JSON Schema pattern).

marshmallow's own types are lenient in ways a JSON Schema cannot describe: Int takes "7" and
7.0, Bool takes "yes" and 1, Email and Url follow regexes of their own, AwareDateTime takes
whatever datetime.fromisoformat takes. The native format is JSON: a number is a number, a
boolean a boolean, and text fields follow the patterns below. Patterns are whole-value
matches (re.fullmatch here, `^...$` under ECMA-262 in the document).
"""
from __future__ import annotations

import re

from marshmallow import ValidationError, fields, validate

EMAIL_PATTERN = (r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                 r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")  # the HTML spec's rule, with a dot in the domain
URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][!-~]*)?$"
DATE_TIME_PATTERN = (r"^(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
                     r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$")


class FullMatch(validate.Regexp):
    """Like validate.Regexp, but the whole value must match (re.match would accept a trailing newline)."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Email(fields.String):
    """An email address: the HTML spec's rule, at most 254 characters."""

    def __init__(self, **kwargs):
        super().__init__(validate=[validate.Length(max=254), FullMatch(EMAIL_PATTERN, error="Not a valid email address.")],
                         metadata={"format": "email", **kwargs.pop("metadata", {})}, **kwargs)


class HttpUrl(fields.String):
    """An absolute http(s) URL of visible ASCII characters, at most 2000 characters."""

    def __init__(self, **kwargs):
        super().__init__(validate=[validate.Length(max=2000), FullMatch(URL_PATTERN, error="Not an http(s) URL.")],
                         metadata={"format": "uri", **kwargs.pop("metadata", {})}, **kwargs)


class DateTime(fields.AwareDateTime):
    """An RFC 3339 timestamp with a time zone: 2026-11-22T10:00:00Z or ...+01:00."""

    _pattern = re.compile(DATE_TIME_PATTERN)

    def __init__(self, **kwargs):
        super().__init__(default_timezone=None, metadata={"pattern": DATE_TIME_PATTERN, **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or self._pattern.fullmatch(value) is None:
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE)
        return super()._deserialize(value, attr, data, **kwargs)


class Boolean(fields.Boolean):
    """true or false; not "yes", 1 or "on"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class Integer(fields.Integer):
    """A JSON integer (7, or 7.0, which JSON Schema counts as one too); not "7" or true."""

    def _validated(self, value):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):  # True is an int in Python, not in JSON
            raise self.make_error("invalid", input=value)
        return value
