<#ftl output_format="plainText">
${msg("orgInviteHeading")}

<#if firstName?has_content>
${msg("emailGreeting", firstName)}
<#else>
${msg("emailGreetingAnonymous")}
</#if>

${msg("orgInviteIntro", organization.name)}

${msg("orgInviteAction")}:
${link}

${msg("orgInviteExpiry", linkExpirationFormatter(linkExpiration))}
${msg("orgInviteIgnore")}

--
${msg("emailFooter")}
