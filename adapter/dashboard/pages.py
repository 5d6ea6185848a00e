"""The operator dashboard's HTML (Jinja, autoescaped), in the keybridge look of the login pages."""

_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
 :root { --kb-navy: #0f2942; --kb-accent: #0f766e; --kb-accent-hover: #115e59; --kb-page: #eef2f6; --kb-muted: #4b5b6b; }
 body { font-family: system-ui, sans-serif; margin: 0; background: var(--kb-page); color: #1b2733; }
 header { background: var(--kb-navy); color: #fff; padding: .9rem 1.5rem; display: flex; align-items: center; justify-content: space-between; }
 header h1 { font-size: 1.25rem; margin: 0; } header .who { font-size: .95rem; }
 header button { background: transparent; color: #fff; border: 1px solid #9fb3c8; border-radius: 4px; }
 main { max-width: 64rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
 section { background: #fff; border-top: 3px solid #14b8a6; border-radius: 6px; padding: .5rem 1.25rem 1rem; margin: 1.25rem 0;
           box-shadow: 0 1px 3px rgba(15, 41, 66, .12); }
 h2 { color: var(--kb-navy); font-size: 1.15rem; }
 table { border-collapse: collapse; width: 100%; margin: .75rem 0; font-size: .95rem; }
 th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid #dde3ea; vertical-align: top; }
 td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
 form.inline { display: inline; }
 .flash { background: #e6f4ef; border: 1px solid #9fd3c0; padding: .6rem .8rem; margin: 1rem 0; border-radius: 4px; }
 .muted { color: var(--kb-muted); }
 input, select { padding: .3rem; font: inherit; }
 button { padding: .3rem .8rem; font: inherit; cursor: pointer; border-radius: 4px; border: 1px solid var(--kb-accent); }
 button.primary { background: var(--kb-accent); color: #fff; } button.primary:hover { background: var(--kb-accent-hover); }
 button.secondary { background: #fff; color: var(--kb-accent); }
 .chart { width: 100%; height: auto; }
 nav.period a { margin-right: .75rem; } nav.period a[aria-current] { font-weight: bold; color: var(--kb-navy); }
 a { color: var(--kb-accent); }
 progress { width: 10rem; }
 code { font-size: .9em; }
 td.when { white-space: nowrap; }
 td { overflow-wrap: break-word; } td.nowrap { white-space: nowrap; }
</style></head><body>
"""

MESSAGE_PAGE = _HEAD + """
<header><h1>Keybridge operations</h1></header>
<main><section>
<h2>{{ title }}</h2>
<p>{{ text }}</p>
<p><a href="{{ url_for('dashboard.home') }}">Back to the dashboard</a></p>
</section></main>
</body></html>
"""

DASHBOARD_PAGE = _HEAD.replace("{{ title }}", "Keybridge operations") + """
<header><h1>Keybridge operations</h1>
 <form method="post" action="{{ url_for('dashboard.logout') }}" class="who">
  Signed in as {{ operator.email or operator.username }}
  <input type="hidden" name="csrf" value="{{ csrf }}"> <button type="submit">Sign out</button></form>
</header>
<main>
{% for message in get_flashed_messages() %}<p class="flash" role="status">{{ message }}</p>{% endfor %}

<section id="funnel" aria-labelledby="funnel-heading">
 <h2 id="funnel-heading">Funnel: invited, registered, active{% if account %} for {{ label }}{% endif %}</h2>
 <nav class="period" aria-label="Period">Period:
  {% for d in (7, 30, 90) %}<a href="{{ url_for('dashboard.home', days=d, account=account) }}"{% if d == days %} aria-current="page"{% endif %}>last {{ d }} days</a>{% endfor %}
 </nav>
 <form method="get" action="{{ url_for('dashboard.home') }}">
  <input type="hidden" name="days" value="{{ days }}">
  <label>Account <select name="account" id="account-select">
   <option value="">All accounts</option>
   {% for a in accounts %}<option value="{{ a.account_id }}"{% if a.account_id == account %} selected{% endif %}>{{ a.name or a.account_id }} ({{ a.account_id }})</option>{% endfor %}
  </select></label> <button type="submit" class="secondary">Show</button>
 </form>
 {{ chart }}
 <p class="muted">Invited: invitations sent. Registered: invitations accepted and self-registrations.
  Active: people Keybridge invited or registered who logged in (each person once over the period).
  Registered can exceed invited: self-registrations, and invitations sent before the period.
  Days are UTC, {{ funnel.start }} to {{ funnel.end }}.</p>
 <table id="funnel-totals">
  <caption class="muted">Totals for the period</caption>
  <thead><tr><th>Account</th><th class="n">Invited</th><th class="n">Registered</th><th class="n">Active</th></tr></thead>
  <tbody>
   <tr data-account=""><th scope="row"><a href="{{ url_for('dashboard.home', days=days) }}">All accounts</a></th>
    {% for stage in stages %}<td class="n" data-stage="{{ stage }}">{{ funnel.overall.totals[stage] }}</td>{% endfor %}</tr>
   {% for a, series in funnel.accounts.items() %}
   <tr data-account="{{ a }}"><th scope="row"><a href="{{ url_for('dashboard.home', days=days, account=a) }}">{{ funnel.names.get(a, a) }}</a> <span class="muted">{{ a }}</span></th>
    {% for stage in stages %}<td class="n" data-stage="{{ stage }}">{{ series.totals[stage] }}</td>{% endfor %}</tr>
   {% endfor %}
  </tbody>
 </table>
 <details><summary>The chart's numbers per day</summary>
  <table id="funnel-days"><thead><tr><th>Day</th><th class="n">Invited</th><th class="n">Registered</th><th class="n">Active</th></tr></thead>
   <tbody>{% for day, invited, registered, active in shown.rows() %}
    <tr data-day="{{ day }}"><td>{{ day }}</td><td class="n">{{ invited }}</td><td class="n">{{ registered }}</td><td class="n">{{ active }}</td></tr>
   {% endfor %}</tbody></table>
 </details>
</section>

<section id="registrations" aria-labelledby="registrations-heading">
 <h2 id="registrations-heading">Registrations waiting for approval ({{ pending|length }})</h2>
 {% if pending %}
 <table>
  <thead><tr><th>Email</th><th>Company</th><th>Registered</th><th>Decision</th></tr></thead>
  <tbody>{% for r in pending %}
   <tr data-email="{{ r.email }}">
    <td>{{ r.email }}</td><td>{{ r.company or "" }}</td><td class="when">{{ when(r.registered_at) }}</td>
    <td>
     <form method="post" action="{{ url_for('dashboard.decide', user_id=r.user_id) }}" class="approve">
      <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="decision" value="approved">
      <label>Account <select name="account_id" required aria-label="Account for {{ r.email }}">
       <option value="">choose…</option>
       {% for a in accounts %}<option value="{{ a.account_id }}"{% if a.account_id == r.matched_account_id %} selected{% endif %}>{{ a.name or a.account_id }} ({{ a.account_id }})</option>{% endfor %}
      </select></label>
      <label>CRM roles <input name="roles" placeholder="e.g. Buyer; Technical Contact" aria-label="CRM roles for {{ r.email }}" size="18"></label>
      <button type="submit" class="primary" aria-label="Approve {{ r.email }}">Approve</button>
     </form>
     <form method="post" action="{{ url_for('dashboard.decide', user_id=r.user_id) }}" class="inline">
      <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="decision" value="rejected">
      <button type="submit" class="secondary" aria-label="Reject {{ r.email }}">Reject</button>
     </form>
    </td>
   </tr>{% endfor %}</tbody>
 </table>
 <p class="muted">Roles are CRM role names ({{ crm_roles|join(", ") }}); none gives the default business roles.
  Rejecting disables the identity.</p>
 {% else %}<p>Nobody is waiting.</p>{% endif %}
</section>

<section id="dead-letters" aria-labelledby="dead-letters-heading">
 <h2 id="dead-letters-heading">Dead letters ({{ dead|length }})</h2>
 {% if dead %}
 <table>
  <thead><tr><th>Kind</th><th>What</th><th class="n">Attempts</th><th>Last error</th><th>Since</th><th></th></tr></thead>
  <tbody>{% for d in dead %}
   <tr data-kind="{{ d.kind }}" data-id="{{ d.id }}">
    <td>{{ d.kind }}</td><td>{{ d.what }}</td><td class="n">{{ d.attempts }}</td><td>{{ d.error or "" }}</td><td class="when">{{ when(d.since) }}</td>
    <td><form method="post" action="{{ url_for('dashboard.replay', kind=d.kind, item_id=d.id) }}" class="inline">
     <input type="hidden" name="csrf" value="{{ csrf }}">
     <button type="submit" class="primary" aria-label="Replay {{ d.kind }} {{ d.id }}">Replay</button></form></td>
   </tr>{% endfor %}</tbody>
 </table>
 {% else %}<p>No dead letters.</p>{% endif %}
</section>

<section id="batches" aria-labelledby="batches-heading">
 <h2 id="batches-heading">Invitation batches</h2>
 {% if batches %}
 <table>
  <thead><tr><th>Batch</th><th>Received</th><th>Progress</th><th>Outcomes</th><th>Status</th></tr></thead>
  <tbody>{% for b in batches %}
   <tr data-batch="{{ b.batch_id }}">
    <td>{{ b.batch_id }}</td><td class="when">{{ when(b.created_at) }}</td>
    <td><progress max="{{ b.total }}" value="{{ b.done }}" aria-label="Batch {{ b.batch_id }}: {{ b.done }} of {{ b.total }} done">{{ b.done }} of {{ b.total }}</progress>
     {{ b.done }} of {{ b.total }}</td>
    <td>{% for outcome, n in b.counts|dictsort %}{{ outcome }}: {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}</td>
    <td>{{ b.status }}</td>
   </tr>{% endfor %}</tbody>
 </table>
 {% else %}<p>No batches yet.</p>{% endif %}
</section>

<section id="audit" aria-labelledby="audit-heading">
 <h2 id="audit-heading">Recent changes (audit)</h2>
 <p class="muted">Times are UTC.</p>
 <table>
  <thead><tr><th>When</th><th>Action</th><th>Subject</th><th>Cause</th></tr></thead>
  <tbody>{% for e in audit %}
   <tr><td class="when">{{ when(e.at) }}</td><td class="nowrap">{{ e.action }}</td><td>{{ e.subject }}</td><td>{{ e.cause }}</td></tr>
  {% else %}<tr><td colspan="4">Nothing yet.</td></tr>{% endfor %}</tbody>
 </table>
</section>
</main>
</body></html>
"""
