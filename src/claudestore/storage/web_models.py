"""Web store log-ins: one row per browser session.

The cookie carries a random token; the table keeps only its SHA-256 (``token_hash``), so a
copy of the database cannot be replayed as a log-in. A session belongs to a user (a
customer, or an operator with ``is_admin``), or to nobody with ``admin`` set: an operator
who logged in to the console with the admin API key. ``csrf_token`` is the token every form
of that session must send back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from claudestore.storage.models import Base, CreatedAt


class WebSession(Base):
    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[datetime]
