<#ftl output_format="plainText">
${msg("emailVerificationHeading")}

<#if (user.firstName)?has_content>
${msg("emailGreeting", user.firstName)}
<#else>
${msg("emailGreetingAnonymous")}
</#if>

${msg("emailVerificationIntro")}

${msg("emailVerificationAction")}:
${link}

${msg("emailVerificationExpiry", linkExpirationFormatter(linkExpiration))}
${msg("emailVerificationIgnore")}

--
${msg("emailFooter")}
