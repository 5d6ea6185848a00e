"""The org admin page's HTML (Jinja, autoescaped): the organization page, the welcome page, a message page.

The look mirrors the realm's login theme (keycloak-theme/keybridge/login/resources/css/portal.css):
the navy brand band with the portal's logo and name, a white card with a teal top line, teal
buttons, the help line at the bottom. The adapter's image does not carry the Keycloak theme, so
the colours and the logo are repeated here (PORTAL_CSS, LOGO_SVG); change both together.
On a narrow screen (a phone, 390 px) every table becomes a list of cards.
"""

LOGO_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48" viewBox="0 0 48 48" role="img" aria-hidden="true">
  <rect width="48" height="48" rx="12" fill="#14b8a6"/>
  <path d="M10 33c3.5-8.5 8.4-13 14-13s10.5 4.5 14 13" fill="none" stroke="#ffffff" stroke-width="4" stroke-linecap="round"/>
  <path d="M17 33v-6M24 33v-9M31 33v-6" fill="none" stroke="#ffffff" stroke-width="3" stroke-linecap="round"/>
  <circle cx="24" cy="13" r="3.2" fill="#0f2942"/>
</svg>
"""

PORTAL_CSS = """
:root {
  --kb-navy: #0f2942; --kb-navy-2: #173a5e; --kb-accent: #0f766e; --kb-accent-hover: #115e59;
  --kb-accent-bright: #14b8a6; --kb-page: #eef2f6; --kb-title: #0f2942; --kb-text: #1b2733;
  --kb-muted: #5b6b7b; --kb-strip: #f6f8fa; --kb-tint: #ecfdf9; --kb-line: #d2d8df; --kb-danger: #b42318;
  --kb-band-height: 16rem;
}
* { box-sizing: border-box; }
html { background: var(--kb-page); }
body {
  margin: 0; min-height: 100vh; color: var(--kb-text);
  font-family: "Red Hat Text", "RedHatText", "Overpass", system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  font-size: 1rem; line-height: 1.5;
  background:
    radial-gradient(60rem 18rem at 50% 0, rgba(20, 184, 166, 0.28), transparent 70%),
    linear-gradient(180deg, var(--kb-navy) 0, var(--kb-navy-2) var(--kb-band-height), var(--kb-page) var(--kb-band-height));
  background-repeat: no-repeat;
}
a { color: var(--kb-accent); }
a:hover { color: var(--kb-accent-hover); }
.kb-top { max-width: 64rem; margin: 0 auto; padding: 2.5rem 1.5rem 1.75rem; display: flex; flex-wrap: wrap;
  align-items: center; justify-content: space-between; gap: 1rem; color: #fff; }
.kb-brand { display: flex; align-items: center; gap: .75rem; }
.kb-logo { flex: none; width: 2.75rem; height: 2.75rem; border-radius: 12px; box-shadow: 0 6px 18px rgba(0, 0, 0, .25);
  background: url("{{ url_for('portal.logo') }}") no-repeat center / contain; }
.kb-brand-name { font-size: 1.6rem; font-weight: 600; letter-spacing: -0.01em; line-height: 1.2; }
.kb-brand-tagline { font-size: .9375rem; color: rgba(255, 255, 255, .78); }
.kb-who { display: flex; align-items: center; gap: .75rem; font-size: .9375rem; color: rgba(255, 255, 255, .85); }
.kb-who form { margin: 0; }
.kb-card { max-width: 64rem; margin: 0 auto; background: #fff; border-top: 5px solid var(--kb-accent-bright);
  border-radius: 14px; overflow: hidden;
  box-shadow: 0 1px 2px rgba(15, 41, 66, .08), 0 16px 40px rgba(15, 41, 66, .16); }
.kb-card-body { padding: 2rem 2rem 1rem; }
.kb-card.kb-narrow { max-width: 32rem; }
body.kb-narrow-body .kb-top { max-width: 32rem; padding-left: 0; padding-right: 0; }
h1 { margin: 0 0 .25rem; font-size: 1.6rem; font-weight: 600; line-height: 1.3; color: var(--kb-title); }
h2 { margin: 2rem 0 .75rem; font-size: 1.15rem; font-weight: 600; color: var(--kb-title); }
.kb-muted { color: var(--kb-muted); }
.kb-switch { margin: .5rem 0 0; font-size: .9375rem; }
.kb-flash { margin: 1.25rem 0 0; padding: .75rem 1rem; border-radius: 8px; border: 1px solid #9fd3c0;
  background: var(--kb-tint); color: var(--kb-title); }
.kb-count { display: inline-block; min-width: 1.6rem; padding: 0 .45rem; border-radius: 999px; background: var(--kb-strip);
  border: 1px solid var(--kb-line); font-size: .8125rem; font-weight: 600; text-align: center; color: var(--kb-muted); }
table.kb-list { width: 100%; border-collapse: collapse; }
.kb-list th { text-align: left; font-size: .8125rem; font-weight: 600; text-transform: uppercase; letter-spacing: .04em;
  color: var(--kb-muted); padding: .5rem .75rem; border-bottom: 1px solid var(--kb-line); }
.kb-list td { padding: .75rem; border-bottom: 1px solid #e6eaef; vertical-align: middle; }
.kb-list tr:last-child td { border-bottom: 0; }
.kb-email { font-weight: 600; word-break: break-word; }
.kb-badge { display: inline-block; margin-left: .35rem; padding: 0 .5rem; border-radius: 999px; font-size: .75rem; font-weight: 600;
  background: var(--kb-tint); color: var(--kb-accent); border: 1px solid #9fd3c0; vertical-align: middle; }
.kb-roles { display: flex; flex-wrap: wrap; gap: .375rem; }
.kb-chip { display: inline-flex; align-items: center; gap: .25rem; margin: 0; padding: .125rem .25rem .125rem .625rem;
  border-radius: 999px; background: var(--kb-strip); border: 1px solid var(--kb-line); font-size: .875rem; }
.kb-chip button { border: 0; background: transparent; color: var(--kb-muted); font-size: 1.05rem; line-height: 1; width: 1.75rem;
  height: 1.75rem; border-radius: 50%; cursor: pointer; padding: 0; }
.kb-chip button:hover { background: #fde8e7; color: var(--kb-danger); }
.kb-none { color: var(--kb-muted); font-size: .875rem; }
.kb-give { display: flex; gap: .375rem; margin: .5rem 0 0; }
.kb-actions { display: flex; flex-wrap: wrap; gap: .5rem; justify-content: flex-end; }
.kb-actions form { margin: 0; }
input, select { font: inherit; color: inherit; padding: .5rem .625rem; border: 1px solid var(--kb-line); border-radius: 6px;
  background: #fff; min-height: 2.5rem; }
input:focus, select:focus, button:focus-visible { outline: 2px solid var(--kb-accent); outline-offset: 1px; }
button { font: inherit; cursor: pointer; }
.kb-button { min-height: 2.5rem; padding: .5rem 1rem; border-radius: 8px; border: 1px solid var(--kb-accent); font-weight: 600;
  background: var(--kb-accent); color: #fff; }
.kb-button:hover { background: var(--kb-accent-hover); border-color: var(--kb-accent-hover); }
.kb-secondary { background: #fff; color: var(--kb-accent); }
.kb-secondary:hover { background: var(--kb-tint); color: var(--kb-accent-hover); }
.kb-danger { background: #fff; color: var(--kb-danger); border-color: #f1b5b0; }
.kb-danger:hover { background: #fde8e7; color: var(--kb-danger); border-color: var(--kb-danger); }
.kb-band-button { background: transparent; color: #fff; border-color: rgba(255, 255, 255, .5); white-space: nowrap; }
.kb-band-button:hover { background: rgba(255, 255, 255, .12); border-color: #fff; }
.kb-invite { display: grid; grid-template-columns: 2fr 1fr 1fr auto; gap: .75rem; align-items: end; }
.kb-invite label { display: flex; flex-direction: column; gap: .25rem; font-size: .875rem; font-weight: 600; color: var(--kb-title); }
.kb-empty { margin: 0; padding: 1rem; border: 1px dashed var(--kb-line); border-radius: 8px; color: var(--kb-muted); text-align: center; }
.kb-help { margin: 2rem 0 0; padding: 1rem 1.5rem; border-top: 1px solid #e6eaef; background: var(--kb-strip);
  font-size: .875rem; color: var(--kb-muted); text-align: center; }
.kb-welcome p { font-size: 1.0625rem; line-height: 1.6; }
.kb-welcome .kb-button { display: block; text-align: center; text-decoration: none; margin: 1.5rem 0 0; }
.kb-page-bottom { height: 2rem; }

/* A phone: the band is lower, the card fills the width, every table row becomes a card. */
@media (max-width: 640px) {
  :root { --kb-band-height: 12rem; }
  body.kb-narrow-body .kb-top { padding: 1.25rem 1rem 1rem; }
  .kb-top { padding: 1.25rem 1rem 1rem; }
  .kb-brand-name { font-size: 1.3rem; }
  .kb-logo { width: 2.25rem; height: 2.25rem; }
  .kb-card { border-radius: 0; }
  .kb-card-body { padding: 1.25rem 1rem .5rem; }
  .kb-list thead { display: none; }
  .kb-list, .kb-list tbody, .kb-list tr, .kb-list td { display: block; width: 100%; }
  .kb-list tr { padding: .75rem 0; border-bottom: 1px solid var(--kb-line); }
  .kb-list tr:last-child { border-bottom: 0; }
  .kb-list td { padding: .25rem 0; border: 0; }
  .kb-list td[data-label]::before { content: attr(data-label); display: block; font-size: .75rem; font-weight: 600;
    text-transform: uppercase; letter-spacing: .04em; color: var(--kb-muted); }
  .kb-list td.kb-email-cell::before { display: none; }
  .kb-actions { justify-content: flex-start; padding-top: .5rem; }
  .kb-give select { flex: 1; min-width: 0; }
  .kb-invite { grid-template-columns: 1fr; }
  .kb-invite .kb-button { width: 100%; }
}
"""

_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
{% block refresh %}{% endblock %}
<style>""" + PORTAL_CSS + """</style></head><body>
"""

_TOP = """<header class="kb-top">
 <div class="kb-brand"><span class="kb-logo" aria-hidden="true"></span>
  <div><div class="kb-brand-name">Customer Portal</div><div class="kb-brand-tagline">{{ tagline }}</div></div></div>
 {% if admin %}<div class="kb-who"><span>{{ admin.email }}</span>
  <form method="post" action="{{ url_for('portal.logout') }}"><input type="hidden" name="csrf" value="{{ csrf }}">
   <button type="submit" class="kb-button kb-band-button">Sign out</button></form></div>{% endif %}
</header>
"""

_BOTTOM = """<p class="kb-help">Questions about your access? Contact your account manager.</p>
</div></main><div class="kb-page-bottom"></div>
</body></html>
"""

MESSAGE_PAGE = _HEAD.replace("{% block refresh %}{% endblock %}", "").replace("<body>", '<body class="kb-narrow-body">') + _TOP + """
<main class="kb-card kb-narrow"><div>
<div class="kb-card-body">
<h1>{{ title }}</h1>
<p>{{ text }}</p>
<p><a href="{{ url_for('portal.members') }}">Back to your organization</a></p>
</div>
""" + _BOTTOM

WELCOME_PAGE = _HEAD.replace("{% block refresh %}{% endblock %}",
                             '<meta http-equiv="refresh" content="{{ delay }};url={{ destination }}">').replace(
    "<body>", '<body class="kb-narrow-body">') + _TOP + """
<main class="kb-card kb-narrow"><div>
<div class="kb-card-body kb-welcome" id="welcome">
<h1>Welcome{% if first_name %}, {{ first_name }}{% endif %}!</h1>
<p>Your Customer Portal account is ready{% if organization %} and you are a member of <strong>{{ organization }}</strong>{% endif %}.
 You are signed in.</p>
<p class="kb-muted">Taking you to {{ destination_name }}&hellip;</p>
<a class="kb-button" id="continue" href="{{ destination }}">Continue</a>
</div>
""" + _BOTTOM

MEMBERS_PAGE = _HEAD.replace("{{ title }}", "{{ org.name }}: organization admin").replace(
    "{% block refresh %}{% endblock %}", "") + _TOP + """
<main class="kb-card"><div>
<div class="kb-card-body">
<h1>{{ org.name }}</h1>
<p class="kb-muted">Your organization's people, their business roles and the invitations still open.</p>
{% if organizations|length > 1 %}
<p class="kb-switch">Your organizations: {% for o in organizations %}{% if o.id == org.id %}<strong>{{ o.name }}</strong>{% else %}<a href="{{ url_for('portal.members', org=o.id) }}">{{ o.name }}</a>{% endif %}{% if not loop.last %} &middot; {% endif %}{% endfor %}</p>
{% endif %}
{% for message in get_flashed_messages() %}<p class="kb-flash" role="status">{{ message }}</p>{% endfor %}

<h2>Members <span class="kb-count">{{ people|length }}</span></h2>
<table id="members" class="kb-list">
 <thead><tr><th>Person</th><th>Business roles</th><th><span class="kb-muted">Actions</span></th></tr></thead>
 <tbody>
 {% for p in people %}
  <tr data-email="{{ p.email }}">
   <td class="kb-email-cell"><div class="kb-email">{{ p.email }}{% if p.admin %}<span class="kb-badge">admin</span>{% endif %}{% if p.you %}<span class="kb-badge">you</span>{% endif %}</div>
    {% if p.name %}<div class="kb-muted">{{ p.name }}</div>{% endif %}</td>
   <td data-label="Business roles"><div class="kb-roles">
    {% for role in p.roles %}<form class="kb-chip" method="post" action="{{ url_for('portal.take_role', user_id=p.id, role=role) }}">
     <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="org" value="{{ org.id }}">
     <span>{{ role }}</span><button type="submit" title="Take {{ role }} away" aria-label="Take {{ role }} from {{ p.email }}">&times;</button>
    </form>{% else %}<span class="kb-none">no business role</span>{% endfor %}</div>
    {% if p.can_give %}<form class="kb-give" method="post" action="{{ url_for('portal.give_role', user_id=p.id) }}">
     <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="org" value="{{ org.id }}">
     <select name="role" aria-label="Role to give {{ p.email }}">{% for role in p.can_give %}<option value="{{ role }}">{{ role }}</option>{% endfor %}</select>
     <button type="submit" class="kb-button kb-secondary" aria-label="Give the role to {{ p.email }}">Give</button>
    </form>{% endif %}</td>
   <td><div class="kb-actions">{% if not p.you %}
    <form method="post" action="{{ url_for('portal.remove', user_id=p.id) }}">
     <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="org" value="{{ org.id }}">
     <button type="submit" name="remove" class="kb-button kb-danger" aria-label="Remove {{ p.email }}">Remove</button>
    </form>{% endif %}</div></td>
  </tr>
 {% endfor %}
 </tbody>
</table>

<h2>Pending invitations <span class="kb-count">{{ invitations|length }}</span></h2>
{% if invitations %}
<table id="invitations" class="kb-list">
 <thead><tr><th>Invited</th><th>Sent</th><th><span class="kb-muted">Actions</span></th></tr></thead>
 <tbody>
 {% for inv in invitations %}
  <tr data-email="{{ inv.email }}">
   <td class="kb-email-cell"><div class="kb-email">{{ inv.email }}</div>{% if inv.name %}<div class="kb-muted">{{ inv.name }}</div>{% endif %}</td>
   <td data-label="Sent">{{ inv.sent.strftime('%d %b %Y, %H:%M UTC') if inv.sent else 'not known' }}</td>
   <td><div class="kb-actions">
    <form method="post" action="{{ url_for('portal.resend_invitation', invitation_id=inv.id) }}">
     <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="org" value="{{ org.id }}">
     <button type="submit" name="resend" class="kb-button kb-secondary" aria-label="Resend the invitation to {{ inv.email }}">Resend</button>
    </form>
    <form method="post" action="{{ url_for('portal.revoke_invitation', invitation_id=inv.id) }}">
     <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="org" value="{{ org.id }}">
     <button type="submit" name="revoke" class="kb-button kb-danger" aria-label="Revoke the invitation to {{ inv.email }}">Revoke</button>
    </form></div></td>
  </tr>
 {% endfor %}
 </tbody>
</table>
{% else %}<p class="kb-empty" id="no-invitations">No invitation is waiting for an answer.</p>{% endif %}

<h2>Invite someone</h2>
<form method="post" action="{{ url_for('portal.invite') }}" id="invite" class="kb-invite">
 <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="org" value="{{ org.id }}">
 <label>Email <input type="email" name="email" required autocomplete="off"></label>
 <label>First name <input name="first_name" required autocomplete="off"></label>
 <label>Last name <input name="last_name" required autocomplete="off"></label>
 <button type="submit" class="kb-button">Invite</button>
</form>
<p class="kb-muted">They get an email with a link to join {{ org.name }}; new people choose their password there.</p>
</div>
""" + _BOTTOM
