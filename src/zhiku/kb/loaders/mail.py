"""E-mail (.eml) with the standard email package: subject, sender, recipients and date, then the text body
(the HTML part, made readable, when there is no plain one). Attachments are listed, not read."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from .base import LoadedDoc, LoaderError, Section, decode_text
from .html import html_to_sections


def _part_text(part: EmailMessage, warnings: list[str]) -> str:
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError, ValueError, AssertionError):
        # Unknown or wrong charset label: decode the raw bytes ourselves.
        payload = part.get_payload(decode=True)
        return decode_text(payload, warnings) if isinstance(payload, bytes) else ""


def load_eml(path: Path) -> LoadedDoc:
    with path.open("rb") as f:
        msg = BytesParser(policy=policy.default).parse(f)
    if not isinstance(msg, EmailMessage):  # policy.default always builds EmailMessage; keeps mypy honest
        raise LoaderError("not an e-mail message")
    warnings: list[str] = []
    subject = " ".join(str(msg.get("subject", "")).split())
    header = [f"{name}: {value}" for name in ("Subject", "From", "To", "Cc", "Date")
              if (value := " ".join(str(msg.get(name, "")).split()))]
    body = ""
    part = msg.get_body(preferencelist=("plain", "html"))
    if isinstance(part, EmailMessage):
        text = _part_text(part, warnings)
        if part.get_content_subtype() == "html":
            text = "\n\n".join(s.text for s in html_to_sections(text))
        body = text.replace("\r\n", "\n").strip()
    attachments = [a.get_filename() or "(unnamed)" for a in msg.iter_attachments()
                   if isinstance(a, EmailMessage)]
    if attachments:
        warnings.append("attachments not indexed: " + ", ".join(attachments))
    text = "\n".join(header) + ("\n\n" + body if body else "")
    return LoadedDoc("eml", [Section(text, None, [subject] if subject else [])], warnings)
