<#import "template.ftl" as layout>
<@layout.emailLayout preheader=msg("orgInvitePreheader", organization.name)>
<@layout.heading msg("orgInviteHeading")/>
<#if firstName?has_content>
<@layout.paragraph msg("emailGreeting", firstName)/>
<#else>
<@layout.paragraph msg("emailGreetingAnonymous")/>
</#if>
<@layout.paragraph msg("orgInviteIntro", organization.name)/>
<@layout.button link msg("orgInviteAction")/>
<@layout.note msg("orgInviteExpiry", linkExpirationFormatter(linkExpiration))/>
<@layout.note msg("orgInviteIgnore")/>
<@layout.linkFallback link/>
</@layout.emailLayout>
