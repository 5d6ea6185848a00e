<#import "template.ftl" as layout>
<@layout.emailLayout>
<h1 style="font-family:sans-serif;font-size:22px;">${msg("orgInviteHeading")}</h1>
<#if firstName?? && lastName??>
<p style="font-family:sans-serif;">${msg("orgInviteGreeting", firstName, lastName)}</p>
</#if>
<p style="font-family:sans-serif;">${msg("orgInviteIntro", organization.name)}</p>
<p style="margin:28px 0;"><a href="${link}" style="background:#0066cc;color:#ffffff;padding:12px 24px;border-radius:4px;text-decoration:none;font-family:sans-serif;font-weight:bold;">${msg("orgInviteAction")}</a></p>
<p style="font-family:sans-serif;color:#555555;">${msg("orgInviteExpiry", linkExpirationFormatter(linkExpiration))}</p>
<p style="font-family:sans-serif;color:#555555;">${msg("orgInviteIgnore")}</p>
</@layout.emailLayout>
