<#import "template.ftl" as layout>
<@layout.emailLayout preheader=msg("emailVerificationPreheader")>
<@layout.heading msg("emailVerificationHeading")/>
<#if (user.firstName)?has_content>
<@layout.paragraph msg("emailGreeting", user.firstName)/>
<#else>
<@layout.paragraph msg("emailGreetingAnonymous")/>
</#if>
<@layout.paragraph msg("emailVerificationIntro")/>
<@layout.button link msg("emailVerificationAction")/>
<@layout.note msg("emailVerificationExpiry", linkExpirationFormatter(linkExpiration))/>
<@layout.note msg("emailVerificationIgnore")/>
<@layout.linkFallback link/>
</@layout.emailLayout>
