<#-- Shown by keycloak-extension's contract check (ContractAccessAuthenticator) when a
     login is refused because the person's company no longer has access, or they left it.
     The message key (keybridgeAccessEnded / keybridgeAccessEndedLeft) arrives as the error. -->
<#import "template.ftl" as layout>
<@layout.registrationLayout displayMessage=false; section>
    <#if section = "header">
        ${msg("keybridgeAccessEndedTitle")}
    <#elseif section = "form">
        <div id="kb-access-ended" data-reason="${(keybridgeReason!"")}">
            <p class="instruction">${kcSanitize(message.summary)?no_esc}</p>
            <#if client?? && client.baseUrl?has_content>
                <p><a id="backToApplication" href="${client.baseUrl}">${msg("backToApplication")}</a></p>
            </#if>
        </div>
    </#if>
</@layout.registrationLayout>
