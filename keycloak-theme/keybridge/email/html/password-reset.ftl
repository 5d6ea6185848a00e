<#import "template.ftl" as layout>
<@layout.emailLayout preheader=msg("passwordResetPreheader")>
<@layout.heading msg("passwordResetHeading")/>
<#if (user.firstName)?has_content>
<@layout.paragraph msg("emailGreeting", user.firstName)/>
<#else>
<@layout.paragraph msg("emailGreetingAnonymous")/>
</#if>
<@layout.paragraph msg("passwordResetIntro")/>
<@layout.button link msg("passwordResetAction")/>
<@layout.note msg("passwordResetExpiry", linkExpirationFormatter(linkExpiration))/>
<@layout.note msg("passwordResetIgnore")/>
<@layout.linkFallback link/>
</@layout.emailLayout>
