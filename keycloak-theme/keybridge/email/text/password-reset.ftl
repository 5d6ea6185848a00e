<#ftl output_format="plainText">
${msg("passwordResetHeading")}

<#if (user.firstName)?has_content>
${msg("emailGreeting", user.firstName)}
<#else>
${msg("emailGreetingAnonymous")}
</#if>

${msg("passwordResetIntro")}

${msg("passwordResetAction")}:
${link}

${msg("passwordResetExpiry", linkExpirationFormatter(linkExpiration))}
${msg("passwordResetIgnore")}

--
${msg("emailFooter")}
