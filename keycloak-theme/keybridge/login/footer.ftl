<#-- keycloak.v2's extension point for a line at the bottom of the card: the portal's help line. -->
<#macro content>
<p class="kb-help">${msg("portalHelp")}</p>
</#macro>
