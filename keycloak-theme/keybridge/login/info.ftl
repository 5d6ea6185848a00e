<#-- base/login/info.ftl with one change: a page that asks for required actions (the
     execute-actions link of an invitation) explains them as accepting the invitation. -->
<#import "template.ftl" as layout>
<@layout.registrationLayout displayMessage=false; section>
    <#if section = "header">
        <#if messageHeader??>
            ${kcSanitize(msg("${messageHeader}"))?no_esc}
        <#else>
            ${message.summary}
        </#if>
    <#elseif section = "form">
    <div id="kc-info-message">
        <#if requiredActions??>
            <p class="instruction">${msg("invitationStepsIntro")}</p>
            <ul class="kb-steps"><#list requiredActions as reqActionItem><li>${kcSanitize(msg("requiredAction.${reqActionItem}"))?no_esc}</li></#list></ul>
        <#else>
            <p class="instruction">${message.summary}</p>
        </#if>
        <#if skipLink??>
        <#else>
            <#if pageRedirectUri?has_content>
                <p><a href="${pageRedirectUri}">${msg("backToApplication")}</a></p>
            <#elseif actionUri?has_content>
                <p><a href="${actionUri}">${msg("proceedWithAction")}</a></p>
            <#elseif (client.baseUrl)?has_content>
                <p><a href="${client.baseUrl}">${msg("backToApplication")}</a></p>
            </#if>
        </#if>
    </div>
    </#if>
</@layout.registrationLayout>
