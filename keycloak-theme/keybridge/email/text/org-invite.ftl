<#ftl output_format="plainText">
${msg("orgInviteHeading")}

<#if firstName?? && lastName??>
${msg("orgInviteGreeting", firstName, lastName)}

</#if>
${msg("orgInviteIntro", organization.name)}

${msg("orgInviteAction")}:
${link}

${msg("orgInviteExpiry", linkExpirationFormatter(linkExpiration))}

${msg("orgInviteIgnore")}
