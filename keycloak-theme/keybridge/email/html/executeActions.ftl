<#-- Sent by execute-actions-email; Keybridge uses it to invite leads, so it reads as an invitation. -->
<#outputformat "plainText">
<#assign requiredActionsText><#if requiredActions??><#list requiredActions><#items as reqActionItem>${msg("requiredAction.${reqActionItem}")}<#sep>, </#sep></#items></#list></#if></#assign>
</#outputformat>
<#import "template.ftl" as layout>
<@layout.emailLayout preheader=msg("executeActionsPreheader")>
<@layout.heading msg("executeActionsHeading")/>
<#if (user.firstName)?has_content>
<@layout.paragraph msg("emailGreeting", user.firstName)/>
<#else>
<@layout.paragraph msg("emailGreetingAnonymous")/>
</#if>
<@layout.paragraph msg("executeActionsIntro")/>
<#if requiredActionsText?has_content>
<@layout.paragraph msg("executeActionsSteps", requiredActionsText)/>
</#if>
<@layout.button link msg("executeActionsAction")/>
<@layout.note msg("executeActionsExpiry", linkExpirationFormatter(linkExpiration))/>
<@layout.note msg("executeActionsIgnore")/>
<@layout.linkFallback link/>
</@layout.emailLayout>
