"""The org admin page's HTML (Jinja, autoescaped): one members page and one message page."""

_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 56rem; padding: 0 1rem; color: #1b2733; }
 table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
 th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #dde3ea; }
 form.inline { display: inline; }
 .flash { background: #e6f4ef; border: 1px solid #9fd3c0; padding: .6rem .8rem; margin: 1rem 0; }
 .muted { color: #5b6b7b; }
 input { padding: .35rem; } button { padding: .35rem .8rem; }
</style></head><body>
"""

MESSAGE_PAGE = _HEAD + """
<h1>{{ title }}</h1>
<p>{{ text }}</p>
<p><a href="{{ url_for('portal.members') }}">Back to your organization</a></p>
</body></html>
"""

MEMBERS_PAGE = _HEAD.replace("{{ title }}", "{{ org.name }}: members") + """
<h1>{{ org.name }}</h1>
<p class="muted">Signed in as {{ admin.email }}.
 Give business roles in <a href="{{ console }}">Keycloak's admin console</a> (Users, a person, Role mapping, Assign role);
 take them away here (&times; next to the role).</p>
{% if organizations|length > 1 %}
<p>Your organizations: {% for o in organizations %}<a href="{{ url_for('portal.members', org=o.id) }}">{{ o.name }}</a>{% if not loop.last %}, {% endif %}{% endfor %}</p>
{% endif %}
{% for message in get_flashed_messages() %}<p class="flash" role="status">{{ message }}</p>{% endfor %}

<h2>Members</h2>
<table id="members">
 <thead><tr><th>Email</th><th>Name</th><th>Business roles</th><th></th></tr></thead>
 <tbody>
 {% for p in people %}
  <tr data-email="{{ p.email }}">
   <td>{{ p.email }}{% if p.admin %} <span class="muted">(admin)</span>{% endif %}</td>
   <td>{{ p.name }}</td>
   <td>{% for role in p.roles %}<form class="inline" method="post" action="{{ url_for('portal.take_role', user_id=p.id, role=role) }}">
     <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="org" value="{{ org.id }}">
     {{ role }} <button type="submit" title="Take {{ role }} away" aria-label="Take {{ role }} from {{ p.email }}">&times;</button>
    </form> {% else %}none{% endfor %}</td>
   <td>{% if not p.you %}
    <form class="inline" method="post" action="{{ url_for('portal.remove', user_id=p.id) }}">
     <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="org" value="{{ org.id }}">
     <button type="submit" name="remove">Remove</button>
    </form>{% endif %}</td>
  </tr>
 {% endfor %}
 </tbody>
</table>

<h2>Invite someone</h2>
<form method="post" action="{{ url_for('portal.invite') }}" id="invite">
 <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="org" value="{{ org.id }}">
 <label>Email <input type="email" name="email" required></label>
 <label>First name <input name="first_name" required></label>
 <label>Last name <input name="last_name" required></label>
 <button type="submit">Invite</button>
</form>

<form method="post" action="{{ url_for('portal.logout') }}"><input type="hidden" name="csrf" value="{{ csrf }}">
 <p><button type="submit">Sign out</button></p></form>
</body></html>
"""
