<#ftl output_format="plainText">
<#-- Sent by execute-actions-email; Keybridge uses it to invite leads, so it reads as an invitation. -->
<#assign requiredActionsText><#if requiredActions??><#list requiredActions><#items as reqActionItem>${msg("requiredAction.${reqActionItem}")}<#sep>, </#sep></#items></#list></#if></#assign>
${msg("executeActionsHeading")}

<#if (user.firstName)?has_content>
${msg("emailGreeting", user.firstName)}
<#else>
${msg("emailGreetingAnonymous")}
</#if>

${msg("executeActionsIntro")}
<#if requiredActionsText?has_content>
${msg("executeActionsSteps", requiredActionsText)}
</#if>

${msg("executeActionsAction")}:
${link}

${msg("executeActionsExpiry", linkExpirationFormatter(linkExpiration))}
${msg("executeActionsIgnore")}

--
${msg("emailFooter")}
