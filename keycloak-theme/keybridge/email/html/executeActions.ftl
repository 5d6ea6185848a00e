<#outputformat "plainText">
<#assign requiredActionsText><#if requiredActions??><#list requiredActions><#items as reqActionItem>${msg("requiredAction.${reqActionItem}")}<#sep>, </#sep></#items></#list></#if></#assign>
</#outputformat>
<#import "template.ftl" as layout>
<@layout.emailLayout>
<h1 style="font-family:sans-serif;font-size:22px;">${msg("executeActionsHeading")}</h1>
<p style="font-family:sans-serif;">${msg("executeActionsIntro", requiredActionsText)}</p>
<p style="margin:28px 0;"><a href="${link}" style="background:#0066cc;color:#ffffff;padding:12px 24px;border-radius:4px;text-decoration:none;font-family:sans-serif;font-weight:bold;">${msg("executeActionsAction")}</a></p>
<p style="font-family:sans-serif;color:#555555;">${msg("executeActionsExpiry", linkExpirationFormatter(linkExpiration))}</p>
<p style="font-family:sans-serif;color:#555555;">${msg("executeActionsIgnore")}</p>
</@layout.emailLayout>
