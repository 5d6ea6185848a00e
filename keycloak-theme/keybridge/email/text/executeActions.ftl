<#ftl output_format="plainText">
<#assign requiredActionsText><#if requiredActions??><#list requiredActions><#items as reqActionItem>${msg("requiredAction.${reqActionItem}")}<#sep>, </#sep></#items></#list></#if></#assign>
${msg("executeActionsHeading")}

${msg("executeActionsIntro", requiredActionsText)}

${msg("executeActionsAction")}:
${link}

${msg("executeActionsExpiry", linkExpirationFormatter(linkExpiration))}

${msg("executeActionsIgnore")}
