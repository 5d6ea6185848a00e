"""The API document: /openapi.json (machine) and /docs (a self-contained page rendered on the server)."""
from __future__ import annotations

import json

from flask import Blueprint, Flask, jsonify, render_template_string

from .openapi import openapi_document

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(openapi_document())


def _resolve(doc: dict, schema):
    """Follow one local $ref (for display only)."""
    if isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return name, doc["components"]["schemas"].get(name, {})
    return None, schema


def _type_of(schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " | ".join(_type_of(s) for s in schema[key])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = " | ".join(kind)
    if kind == "array":
        return f"array of {_type_of(schema.get('items', {}))}"
    return kind


def _rules(schema: dict) -> str:
    parts = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(json.dumps(v) for v in schema["enum"]))
    for key, word in (("minLength", "min length"), ("maxLength", "max length"), ("minimum", "min"), ("maximum", "max"),
                      ("format", "format"), ("pattern", "pattern"), ("default", "default")):
        if key in schema:
            parts.append(f"{word} {json.dumps(schema[key]) if key != 'format' else schema[key]}")
    if schema.get("description"):
        parts.append(schema["description"])
    return "; ".join(parts)


def _fields(schema: dict) -> list[dict]:
    required = set(schema.get("required", []))
    return [{"name": name, "type": _type_of(prop), "required": name in required, "rules": _rules(prop)}
            for name, prop in schema.get("properties", {}).items()]


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ doc.info.title }} API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:68rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2.5rem} h3{margin:1.6rem 0 .3rem}
code,td.t{font-family:ui-monospace,monospace;font-size:13px} table{border-collapse:collapse;width:100%;margin:.4rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top} th{background:#f4f4f4}
.m{display:inline-block;min-width:3.5rem;font-weight:bold} .req{color:#b00} nav a{margin-right:1rem}
</style></head><body>
<h1>{{ doc.info.title }} <small>OpenAPI {{ doc.openapi }}</small></h1>
<p>{{ doc.info.description }}</p>
<nav><a href="#operations">Operations</a><a href="#schemas">Schemas</a><a href="#webhooks">Outbound events</a><a href="openapi.json">openapi.json</a></nav>
<h2 id="operations">Operations</h2>
{% for op in operations %}
<h3 id="{{ op.id }}"><span class="m">{{ op.method }}</span> <code>{{ op.path }}</code></h3>
<p>{{ op.summary }}{% if op.security %} — needs <code>{{ op.security }}</code>{% endif %}</p>
{% if op.params %}<table><tr><th>parameter</th><th>in</th><th>type</th><th>rules</th></tr>
{% for p in op.params %}<tr><td class="t">{{ p.name }}{% if p.required %} <span class="req">*</span>{% endif %}</td><td>{{ p.in }}</td><td class="t">{{ p.type }}</td><td>{{ p.rules }}</td></tr>{% endfor %}</table>{% endif %}
{% if op.body %}<p>Body: <code>{{ op.body }}</code></p>{% endif %}
<table><tr><th>status</th><th>meaning</th><th>body</th></tr>
{% for r in op.responses %}<tr><td class="t">{{ r.code }}</td><td>{{ r.description }}</td><td class="t">{{ r.body }}</td></tr>{% endfor %}</table>
{% endfor %}
<h2 id="schemas">Schemas</h2>
{% for s in schemas %}
<h3 id="schema-{{ s.name }}"><code>{{ s.name }}</code></h3>
{% if s.description %}<p>{{ s.description }}</p>{% endif %}
{% if s.fields %}<table><tr><th>field</th><th>type</th><th>rules</th></tr>
{% for f in s.fields %}<tr><td class="t">{{ f.name }}{% if f.required %} <span class="req">*</span>{% endif %}</td><td class="t">{{ f.type }}</td><td>{{ f.rules }}</td></tr>{% endfor %}</table>
{% else %}<p><code>{{ s.type }}</code></p>{% endif %}
{% endfor %}
<h2 id="webhooks">Outbound events (to the CRM)</h2>
{% for w in webhooks %}
<h3 id="webhook-{{ w.name }}"><code>{{ w.name }}</code></h3>
<table><tr><th>data field</th><th>type</th><th>rules</th></tr>
{% for f in w.fields %}<tr><td class="t">{{ f.name }}{% if f.required %} <span class="req">*</span>{% endif %}</td><td class="t">{{ f.type }}</td><td>{{ f.rules }}</td></tr>{% endfor %}</table>
{% endfor %}
<p><span class="req">*</span> required</p>
</body></html>"""


def page_context(doc: dict) -> dict:
    operations = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            params = [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                       "type": _type_of(p.get("schema", {})), "rules": "; ".join(filter(None, [_rules(p.get("schema", {})), p.get("description", "")]))}
                      for p in op.get("parameters", [])]
            body = None
            if "requestBody" in op:
                content = op["requestBody"]["content"]
                media, spec = next(iter(content.items()))
                body = f"{media}: {_type_of(spec['schema'])}"
            responses = []
            for code, response in op["responses"].items():
                schema = next(iter(response.get("content", {}).values()), {}).get("schema")
                responses.append({"code": code, "description": response.get("description", ""), "body": _type_of(schema) if schema else ""})
            security = ", ".join(name for req in op.get("security", []) for name in req)
            operations.append({"method": method.upper(), "path": path, "id": op.get("operationId", ""), "summary": op.get("summary", ""),
                               "security": security, "params": params, "body": body, "responses": responses})
    schemas = [{"name": name, "description": schema.get("description", ""), "fields": _fields(schema), "type": _type_of(schema)}
               for name, schema in doc["components"]["schemas"].items()]
    webhooks = [{"name": name, "fields": _fields(item["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["data"])}
                for name, item in doc.get("webhooks", {}).items()]
    return {"doc": doc, "operations": operations, "schemas": schemas, "webhooks": webhooks}


@bp.get("/docs")
def docs_page():
    return render_template_string(PAGE, **page_context(openapi_document()))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
