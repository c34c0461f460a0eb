"""Conversations, messages and feedback in the database `database_url` names (SQLite or PostgreSQL);
each completed message is committed on its own."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from zhiku import db
from zhiku.chat.errors import ConversationNotFound, MessageNotFound
from zhiku.chat.schema import HISTORY
from zhiku.chat.sources import Source, WebSource, sources_from


def new_id() -> str:
    return uuid.uuid4().hex


def _title(query: str) -> str:
    line = " ".join(query.split())
    return line[:60] + ("…" if len(line) > 60 else "")


class HistoryStore:
    """Calls are short, and the service runs them off the event loop. `database` is a SQLite file or an
    open zhiku.db.Database (PostgreSQL)."""

    def __init__(self, database: Path | db.Database) -> None:
        self._db: db.Database = db.SqliteDatabase(database, HISTORY) if isinstance(database, Path) else database

    def close(self) -> None:
        self._db.close()

    # conversations -----------------------------------------------------------------------------------

    def ensure_conversation(self, conversation_id: str | None, mode: str, query: str) -> str:
        """The given conversation (created if unknown), or a new one titled after the question."""
        cid = conversation_id or new_id()
        now = time.time()
        with self._db.transaction() as c:
            c.run("INSERT INTO conversation(id, title, mode, created, updated) VALUES (?, ?, ?, ?, ?) "
                      "ON CONFLICT(id) DO NOTHING", (cid, _title(query), mode, now, now))
            # a conversation created by a file upload has no title yet
            c.run("UPDATE conversation SET title = ? WHERE id = ? AND title = ''", (_title(query), cid))
        return cid

    def create_conversation(self, title: str = "", mode: str = "llm", conversation_id: str | None = None) -> str:
        cid = conversation_id or new_id()
        now = time.time()
        with self._db.transaction() as c:
            c.run("INSERT INTO conversation(id, title, mode, created, updated) VALUES (?, ?, ?, ?, ?) "
                      "ON CONFLICT(id) DO NOTHING", (cid, title, mode, now, now))
        return cid

    def list_conversations(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        with self._db.read() as c:
            rows = c.rows(
                "SELECT c.*, (SELECT COUNT(*) FROM message m WHERE m.conversation_id = c.id) AS messages "
                "FROM conversation c ORDER BY updated DESC LIMIT ? OFFSET ?", (limit, offset))
        return [dict(r) for r in rows]

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        with self._db.read() as c:
            row = c.one("SELECT * FROM conversation WHERE id = ?", (conversation_id,))
        if row is None:
            raise ConversationNotFound(conversation_id)
        return dict(row)

    def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        """The conversation with all its messages (and their feedback), oldest first."""
        conv = self.conversation(conversation_id)
        with self._db.read() as c:
            rows = c.rows(
                "SELECT m.*, f.score AS feedback_score, f.reason AS feedback_reason FROM message m "
                "LEFT JOIN feedback f ON f.message_id = m.id WHERE m.conversation_id = ? ORDER BY m.seq",
                (conversation_id,))
        conv["messages"] = [_message(r) for r in rows]
        return conv

    def rename_conversation(self, conversation_id: str, title: str) -> None:
        with self._db.transaction() as c:
            n = c.run("UPDATE conversation SET title = ?, updated = ? WHERE id = ?",
                          (title.strip(), time.time(), conversation_id))
        if not n:
            raise ConversationNotFound(conversation_id)

    def delete_conversation(self, conversation_id: str) -> str | None:
        """Delete it with its messages and feedback; returns its temporary knowledge base, if any."""
        with self._db.transaction() as c:
            row = c.one("SELECT file_kb FROM conversation WHERE id = ?", (conversation_id,))
            if row is None:
                raise ConversationNotFound(conversation_id)
            c.run("DELETE FROM conversation WHERE id = ?", (conversation_id,))
        file_kb: str | None = row["file_kb"]
        return file_kb

    def set_file_kb(self, conversation_id: str, kb_name: str) -> None:
        with self._db.transaction() as c:
            c.run("UPDATE conversation SET file_kb = ?, updated = ? WHERE id = ?",
                      (kb_name, time.time(), conversation_id))

    # messages ----------------------------------------------------------------------------------------

    def add_message(self, conversation_id: str, role: str, content: str, mode: str,
                    sources: list[dict[str, Any]] | None = None, tool_calls: list[dict[str, Any]] | None = None,
                    usage: dict[str, Any] | None = None, timings: dict[str, Any] | None = None,
                    model: str = "") -> str:
        """Store one complete message in its own transaction; returns its id."""
        mid = new_id()
        now = time.time()
        with self._db.transaction() as c:
            c.run(
                "INSERT INTO message(id, conversation_id, role, content, mode, sources, tool_calls, usage, "
                "timings, model, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (mid, conversation_id, role, content, mode, _dump(sources or []), _dump(tool_calls or []),
                 _dump(usage or {}), _dump(timings or {}), model, now))
            c.run("UPDATE conversation SET updated = ? WHERE id = ?", (now, conversation_id))
        return mid

    def recent_turns(self, conversation_id: str, turns: int) -> list[dict[str, Any]]:
        """The last `turns` question/answer pairs as chat messages; a question left unanswered is skipped."""
        if turns <= 0:
            return []
        with self._db.read() as c:
            rows = c.rows(
                "SELECT role, content FROM message WHERE conversation_id = ? ORDER BY seq DESC LIMIT ?",
                (conversation_id, turns * 4))
        return pair_turns([{"role": r["role"], "content": r["content"]} for r in reversed(rows)], turns)

    def message(self, message_id: str) -> dict[str, Any]:
        with self._db.read() as c:
            row = c.one("SELECT * FROM message WHERE id = ?", (message_id,))
        if row is None:
            raise MessageNotFound(message_id)
        return _message(row)

    # feedback ----------------------------------------------------------------------------------------

    def add_feedback(self, message_id: str, score: int, reason: str = "") -> None:
        """Thumbs up (1) or down (-1); a later vote on the same message replaces the earlier one."""
        if score not in (1, -1):
            raise ValueError("score must be 1 or -1")
        with self._db.transaction() as c:
            if c.one("SELECT 1 FROM message WHERE id = ?", (message_id,)) is None:
                raise MessageNotFound(message_id)
            c.run("INSERT INTO feedback(message_id, score, reason, created) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT(message_id) DO UPDATE SET score = excluded.score, reason = excluded.reason, "
                      "created = excluded.created", (message_id, score, reason, time.time()))

    # export ------------------------------------------------------------------------------------------

    def export_markdown(self, conversation_id: str) -> str:
        conv = self.get_conversation(conversation_id)
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(conv["created"]))
        lines = [f"# {conv['title'] or 'Conversation'}", "", f"*{created} · {conv['id']}*", ""]
        for m in conv["messages"]:
            who = "User" if m["role"] == "user" else "Assistant"
            lines += [f"## {who}" + (f" ({m['mode']})" if m["role"] == "assistant" else ""), "", m["content"], ""]
            for call in m["tool_calls"]:
                args = json.dumps(call.get("arguments", {}), ensure_ascii=False)
                lines.append(f"- tool `{call.get('name')}` {args} → {str(call.get('result', ''))[:200]}")
            if m["tool_calls"]:
                lines.append("")
            if m["sources"]:
                lines += ["**Sources**", ""]
                lines += [f"{s.index or i + 1}. {_source_line(s)}" for i, s in enumerate(sources_from(m["sources"]))]
                lines.append("")
            if m.get("feedback_score"):
                thumb = "👍" if m["feedback_score"] > 0 else "👎"
                lines += [f"*Feedback: {thumb} {m.get('feedback_reason') or ''}*".rstrip(), ""]
        return "\n".join(lines).rstrip() + "\n"


def pair_turns(messages: list[dict[str, Any]], turns: int) -> list[dict[str, Any]]:
    """The last `turns` (user, assistant) pairs from a message list; unpaired messages are left out."""
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    i = 0
    while i + 1 < len(messages):
        a, b = messages[i], messages[i + 1]
        if a["role"] == "user" and b["role"] == "assistant":
            pairs.append((a, b))
            i += 2
        else:
            i += 1
    out: list[dict[str, Any]] = []
    for a, b in pairs[-turns:] if turns > 0 else []:
        out += [{"role": "user", "content": a["content"]}, {"role": "assistant", "content": b["content"]}]
    return out


def _source_line(s: Source) -> str:
    return f"[{s.name()}]({s.url})" if isinstance(s, WebSource) else s.label()


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _message(row: dict[str, Any]) -> dict[str, Any]:
    d = dict(row)
    d.pop("seq", None)
    for key in ("sources", "tool_calls", "usage", "timings"):
        d[key] = json.loads(d[key])
    return d
