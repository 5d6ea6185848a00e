<#-- The shared layout of every html email: a navy brand header, a white card and a footer.
     Table-based with inline styles, because most mail clients ignore <style> and flexbox.
     Every word comes from messages/messages_*.properties. Nothing before <#nested> is a link,
     so the action button of each email stays its first link. -->
<#macro emailLayout preheader="">
<!DOCTYPE html>
<html lang="${locale.language}" dir="${(ltr)?then('ltr','rtl')}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>${msg("emailBrandName")}</title>
</head>
<body style="margin:0;padding:0;background-color:#eef2f6;">
<#if preheader?has_content>
<div style="display:none;max-height:0;overflow:hidden;mso-hide:all;">${preheader}</div>
</#if>
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="background-color:#eef2f6;">
<tr>
<td align="center" style="padding:32px 12px;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="max-width:560px;width:100%;">
<tr>
<td style="background-color:#0f2942;border-radius:12px 12px 0 0;padding:22px 32px;">
<table role="presentation" cellpadding="0" cellspacing="0" border="0">
<tr>
<td width="32" height="32" style="width:32px;height:32px;background-color:#14b8a6;border-radius:8px;font-size:0;line-height:0;">&nbsp;</td>
<td style="padding-left:12px;font-family:Helvetica,Arial,sans-serif;font-size:20px;font-weight:bold;color:#ffffff;">${msg("emailBrandName")}</td>
</tr>
</table>
<div style="padding-top:6px;font-family:Helvetica,Arial,sans-serif;font-size:13px;color:#b7c4d3;">${msg("emailBrandTagline")}</div>
</td>
</tr>
<tr>
<td style="background-color:#ffffff;border-top:4px solid #14b8a6;padding:32px;font-family:Helvetica,Arial,sans-serif;font-size:15px;line-height:1.6;color:#1f2d3d;">
<#nested>
</td>
</tr>
<tr>
<td style="background-color:#f6f8fa;border-radius:0 0 12px 12px;border-top:1px solid #e1e6ec;padding:18px 32px;font-family:Helvetica,Arial,sans-serif;font-size:12px;line-height:1.5;color:#5b6b7b;">${msg("emailFooter")}</td>
</tr>
</table>
</td>
</tr>
</table>
</body>
</html>
</#macro>

<#-- The pieces each email is made of. -->
<#macro heading text>
<h1 style="margin:0 0 16px;font-family:Helvetica,Arial,sans-serif;font-size:22px;line-height:1.3;color:#0f2942;">${text}</h1>
</#macro>

<#macro paragraph text>
<p style="margin:0 0 16px;">${text}</p>
</#macro>

<#macro button link label>
<table role="presentation" cellpadding="0" cellspacing="0" border="0" style="margin:24px 0;">
<tr>
<td style="background-color:#0f766e;border-radius:8px;">
<a href="${link}" style="display:inline-block;padding:13px 28px;font-family:Helvetica,Arial,sans-serif;font-size:15px;font-weight:bold;color:#ffffff;text-decoration:none;border-radius:8px;">${label}</a>
</td>
</tr>
</table>
</#macro>

<#macro note text>
<p style="margin:0 0 12px;font-size:13px;color:#5b6b7b;">${text}</p>
</#macro>

<#-- The same link spelled out, for mail clients that do not show the button. -->
<#macro linkFallback link>
<p style="margin:20px 0 0;padding-top:16px;border-top:1px solid #e1e6ec;font-size:12px;color:#5b6b7b;">${msg("emailLinkFallback")}<br><a href="${link}" style="color:#0f766e;word-break:break-all;">${link}</a></p>
</#macro>
