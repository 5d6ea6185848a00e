/*
 * Keybridge: the account console's "Your organization" entry is for org admins only.
 *
 * The console's menu is a static file (content.json) that it fetches itself; which entries it
 * shows can depend on realm features only, never on the person. So this classic script, loaded
 * by index.ftl before the console's own module, wraps window.fetch: it reads the person's access
 * token as the console obtains it (the token endpoint's answer, or the Authorization header of the
 * console's account API calls) and, when the console fetches content.json, leaves out the entry
 * unless the token carries the realm role org_admin (the account-console client has that role in
 * its scope: realm-config/customers-realm.json, scopeMappings). Without a token within 15 s the
 * entry stays hidden. Hiding is a convenience, not the protection: the adapter's page asks
 * Keycloak on every request whether the person administers their organization.
 */
(function () {
  "use strict";
  var ENTRY_PATH = "content/:componentId";  // the entry's path in content.json (theme.properties says why)
  var realFetch = window.fetch.bind(window);
  var settle;
  var decision = new Promise(function (resolve) { settle = resolve; });

  function claimsOf(jwt) {
    try {
      var part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      part += "===".slice((part.length + 3) % 4);
      return JSON.parse(decodeURIComponent(Array.prototype.map.call(atob(part), function (c) {
        return "%" + ("00" + c.charCodeAt(0).toString(16)).slice(-2);
      }).join("")));
    } catch (e) {
      return null;
    }
  }

  function learn(token) {
    var claims = claimsOf(token);
    if (!claims) return;
    var roles = (claims.realm_access && claims.realm_access.roles) || [];
    window.keybridgeOrgAdmin = roles.indexOf("org_admin") >= 0;
    settle(window.keybridgeOrgAdmin);
  }

  function authorizationOf(input, init) {
    var headers = (init && init.headers) || (input && typeof input === "object" && input.headers);
    if (!headers) return null;
    if (typeof headers.get === "function") return headers.get("authorization");
    return headers.authorization || headers.Authorization || null;
  }

  window.fetch = function (input, init) {
    var url = String(typeof input === "string" ? input : (input && input.url) || input).split("?")[0];
    var auth = authorizationOf(input, init);
    if (auth && /^Bearer ey/.test(auth)) learn(auth.slice(7));
    var answer = realFetch(input, init);
    if (/\/protocol\/openid-connect\/token$/.test(url)) {
      answer.then(function (r) { return r.clone().json(); })
        .then(function (body) { if (body && body.access_token) learn(body.access_token); })
        .catch(function () {});
    }
    if (/\/content\.json$/.test(url)) {
      return answer.then(function (r) {
        if (!r.ok) return r;
        return r.clone().json().then(function (items) {
          var late = new Promise(function (resolve) { setTimeout(function () { resolve(false); }, 15000); });
          return Promise.race([decision, late]).then(function (isOrgAdmin) {
            var shown = isOrgAdmin ? items : items.filter(function (item) { return item.path !== ENTRY_PATH; });
            return new Response(JSON.stringify(shown), { status: 200, headers: { "content-type": "application/json" } });
          });
        });
      });
    }
    return answer;
  };
})();
