#!/usr/bin/env python3
"""A local SMTP server that keeps every message as an .eml file.

Keycloak of the dev stack and of the tests sends its emails here. Each message
is written to DIR as <arrival time in ns>.eml (names sort by arrival) with the
SMTP envelope in X-Envelope-From / X-Envelope-To headers, and one line is
printed per message:

    mail to=<rcpt> subject=<subject> link=<first http(s) link>

Usage:
    python scripts/mailsink.py --host 127.0.0.1 --port 1025 --dir .data/dev/mail [--pid-file FILE]
    python scripts/mailsink.py --dir .data/dev/mail --wait-for ADDRESS [--timeout 60]
        (no server: waits until DIR holds a message to ADDRESS, prints its line;
         exit code 1 after the timeout)
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

LINK_PATTERN = re.compile(r"https?://[^\s<>\"']+")


@dataclass(frozen=True)
class Mail:
    """One received message, as a test or a person wants to see it."""

    path: Path
    to: list[str]
    subject: str
    text: str
    html: str
    link: str | None


class _FirstLink(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.link: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.link is None and tag == "a":
            href = dict(attrs).get("href") or ""
            if href.startswith(("http://", "https://")):
                self.link = href


def first_link(text: str, html: str) -> str | None:
    """The first http(s) link of the plain-text part, else of the html part."""
    match = LINK_PATTERN.search(text)
    if match:
        return match.group(0).rstrip(".,;)")
    parser = _FirstLink()
    parser.feed(html)
    if parser.link:
        return parser.link
    match = LINK_PATTERN.search(html)
    return match.group(0) if match else None


def parse_mail(raw: bytes, path: Path | None = None) -> Mail:
    """Parses a stored message; recipients come from the envelope when present."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    envelope_to = message.get("X-Envelope-To")
    if envelope_to:
        to = [address.strip() for address in str(envelope_to).split(",") if address.strip()]
    else:
        to = [address.addr_spec for header in message.get_all("To", []) for address in header.addresses]
    text = html = ""
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        content_type = part.get_content_type()
        if content_type == "text/plain" and not text:
            text = part.get_content()
        elif content_type == "text/html" and not html:
            html = part.get_content()
    return Mail(
        path=path or Path(),
        to=to,
        subject=str(message.get("Subject", "")),
        text=text,
        html=html,
        link=first_link(text, html),
    )


def summary_line(mail: Mail) -> str:
    return f"mail to={','.join(mail.to)} subject={mail.subject} link={mail.link or '-'}"


def read_mails(directory: str | os.PathLike, to: str | None = None) -> list[Mail]:
    """Every message stored in directory, oldest first; only those for `to` if given."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    mails = [parse_mail(path.read_bytes(), path) for path in sorted(folder.glob("*.eml"))]
    if to is not None:
        wanted = to.lower()
        mails = [mail for mail in mails if wanted in (address.lower() for address in mail.to)]
    return mails


def wait_for_mail(directory: str, address: str, timeout: float) -> int:
    """Prints the newest message to `address` once there is one; 1 if none came in time."""
    deadline = time.monotonic() + timeout
    while True:
        mails = read_mails(directory, to=address)
        if mails:
            print(summary_line(mails[-1]), flush=True)
            return 0
        if time.monotonic() >= deadline:
            print(f"mailsink: no message to {address} in {directory} after {timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(0.5)


class MailDirHandler:
    """aiosmtpd handler: store, then print the summary line."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._last_name = 0

    def _next_path(self) -> Path:
        with self._lock:
            name = max(time.time_ns(), self._last_name + 1)
            self._last_name = name
        return self.directory / f"{name:020d}.eml"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        headers = (
            f"X-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode("utf-8")
        path = self._next_path()
        tmp = path.with_suffix(".part")
        tmp.write_bytes(headers + content)
        tmp.rename(path)
        try:
            print(summary_line(parse_mail(path.read_bytes(), path)), flush=True)
        except Exception as error:  # a message we cannot parse is still kept
            print(f"mail stored {path.name} (not parsed: {error})", flush=True)
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local SMTP sink that stores messages as .eml files.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", required=True, help="folder for the .eml files")
    parser.add_argument("--pid-file", help="write this process's pid here while it runs")
    parser.add_argument("--wait-for", metavar="ADDRESS", help="do not serve: wait for a message to ADDRESS in --dir")
    parser.add_argument("--timeout", type=float, default=60, help="seconds --wait-for waits (default 60)")
    args = parser.parse_args(argv)
    if args.wait_for:
        return wait_for_mail(args.dir, args.wait_for, args.timeout)

    from aiosmtpd.controller import Controller

    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(MailDirHandler(directory), hostname=args.host, port=args.port)
    try:
        controller.start()
    except Exception as error:
        print(f"mailsink: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    if args.pid_file:
        Path(args.pid_file).write_text(f"{os.getpid()}\n")
    print(f"mailsink: listening on smtp://{args.host}:{args.port}, storing into {directory}", flush=True)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        controller.stop()
        if args.pid_file:
            Path(args.pid_file).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
