"""How to reach NATS: the same settings and `AGENTRY_NATS_*` variables the Rust binaries take."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import nats
from nats.aio.client import Client as NatsClient

from . import wire


@dataclass(frozen=True)
class Settings:
    url: str = "nats://127.0.0.1:4222"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    #: Reply inbox prefix; under auth every user may subscribe only to `_INBOX.<user>.>`.
    inbox_prefix: str | None = None
    name: str = "agentry-python"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, name: str = "agentry-python") -> Settings:
        e = os.environ if env is None else env
        user = e.get("AGENTRY_NATS_USER")
        prefix = e.get("AGENTRY_NATS_INBOX_PREFIX") or (wire.inbox_prefix(user) if user else None)
        return cls(
            url=e.get("AGENTRY_NATS_URL") or e.get("NATS_URL") or cls.url,
            user=user,
            password=e.get("AGENTRY_NATS_PASSWORD"),
            token=e.get("AGENTRY_NATS_TOKEN"),
            inbox_prefix=prefix,
            name=name,
        )

    def with_user(self, user: str, password: str) -> Settings:
        return Settings(self.url, user, password, None, wire.inbox_prefix(user), self.name)

    async def connect(self) -> NatsClient:
        kwargs: dict[str, object] = {"servers": self.url.split(","), "name": self.name}
        if self.user:
            kwargs["user"] = self.user
            kwargs["password"] = self.password or ""
        if self.token:
            kwargs["token"] = self.token
        if self.inbox_prefix:
            kwargs["inbox_prefix"] = self.inbox_prefix
        return await nats.connect(**kwargs)  # type: ignore[arg-type]
