/*
 * Keybridge: the account console's "Your organization" page (content.json, modulePath): a short
 * explanation and the way to the adapter's org admin page, where an org admin manages their
 * organization's people, business roles and invitations. React comes from the console's import map.
 */
import { createElement as h } from "react";

function portalUrl() {
  try {
    return JSON.parse(document.getElementById("keybridge-config").textContent).portalUrl || "";
  } catch (e) {
    return "";
  }
}

export default function OrganizationAdmin() {
  if (window.keybridgeOrgAdmin === false) {
    return h("section", { className: "pf-v5-c-page__main-section", "data-testid": "keybridge-org-admin" },
      h("h1", { className: "pf-v5-c-title pf-m-2xl" }, "Your organization"),
      h("p", null, "This page is for your organization's admins."));
  }
  return h("section", { className: "pf-v5-c-page__main-section", "data-testid": "keybridge-org-admin" },
    h("h1", { className: "pf-v5-c-title pf-m-2xl" }, "Your organization"),
    h("p", { style: { margin: "1rem 0", maxWidth: "40rem" } },
      "You are an admin of your organization. On its page you see its people and their business roles, give and "
      + "take roles, invite someone, and send again or revoke the invitations that are still open."),
    h("a", { className: "pf-v5-c-button pf-m-primary", href: portalUrl(), id: "keybridge-open-org-admin" },
      "Open your organization's page"));
}
