// On the registration page only: once the email field holds an address, ask
// keycloak-extension (/realms/<realm>/keybridge/registration-hint) whether access
// will be automatic or needs approval, and show its answer under the field.
// The wording comes from the theme's messages (keybridgeRegistration*).
(function () {
  "use strict";
  function start() {
    var form = document.getElementById("kc-register-form");
    var email = document.getElementById("email");
    if (!form || !email || !window.fetch) {
      return;
    }
    var realmBase = form.getAttribute("action").split("/login-actions/")[0];
    var hint = document.createElement("p");
    hint.id = "kb-registration-hint";
    hint.className = "kb-registration-hint";
    hint.setAttribute("aria-live", "polite");
    // after the field's box (keycloak.v2 wraps the input in a bordered span), not inside it
    (email.closest(".pf-v5-c-form-control") || email).insertAdjacentElement("afterend", hint);
    var asked = "";
    var timer = null;
    function ask() {
      var value = email.value.trim();
      if (value === asked) {
        return;
      }
      asked = value;
      if (value.indexOf("@") < 1) {
        hint.textContent = "";
        hint.removeAttribute("data-access");
        return;
      }
      fetch(realmBase + "/keybridge/registration-hint?email=" + encodeURIComponent(value), {credentials: "omit"})
        .then(function (response) { return response.ok ? response.json() : {}; })
        .then(function (answer) {
          if (asked !== value) {
            return;
          }
          hint.textContent = answer.message || "";
          if (answer.access && answer.message) {
            hint.setAttribute("data-access", answer.access);
          } else {
            hint.removeAttribute("data-access");
          }
        })
        .catch(function () { hint.textContent = ""; });
    }
    email.addEventListener("change", ask);
    email.addEventListener("blur", ask);
    email.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(ask, 600);
    });
    ask();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
