"""How to log in to a cluster's head over SSH: one model for every door that opens a tunnel.

The Prefect Block, the Airflow `raydog` connection, the autoscaler's `auth` and `RayTunnels` each keep
their own field names (users have them in saved Blocks, connections and YAML); each maps them onto this
model, so the rules (one way to authenticate, how the host key is checked, which files must exist) live
in one place. Secrets are `SecretStr`: the repr shows none, and a key given as text is loaded in memory,
never written to disk.

```python
access = SshAccess(user="yd-agent", private_key_file="~/.ssh/raydog", known_hosts_file="~/.ssh/known_hosts")
with tunnel_to_head(state, access, [state.head.dashboard_port]) as tunnels: ...  # raydog_core.tunnels
```
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import paramiko
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from raydog_core.errors import SpecError
from raydog_core.spec import build_model

HostKeyPolicy = Literal["known_hosts", "fingerprint", "unverified"]
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
KEY_TYPES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


class SshAccess(BaseModel):
    """A user, one way to authenticate, the port, and how to check the head's host key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(min_length=1, description="User to log in as on the head node.")
    private_key_file: str | None = Field(None, description="Private key file on the machine that connects.")
    private_key: SecretStr | None = Field(None, description="Private key text (instead of a file).")
    private_key_password: SecretStr | None = None
    password: SecretStr | None = None
    port: int = Field(22, ge=1, le=65535)
    known_hosts_file: str | None = Field(None, description="known_hosts file holding the head's host key.")
    host_key_fingerprint: str | None = Field(None, description="SHA256:... of the head's host key.")
    skip_host_key_check: bool = Field(
        False,
        description="Do not verify the head's host key (insecure: whoever sits in between sees the "
        "tunnel's traffic, the Ray token included; warned on every connection).",
    )

    @model_validator(mode="after")
    def _one_way_in(self) -> SshAccess:
        if self.private_key is not None and self.private_key_file is not None:
            raise SpecError("private_key", "given as well as private_key_file", "give one of them")
        if self.private_key is None and self.private_key_file is None and self.password is None:
            raise SpecError("private_key_file", "neither a password nor a private key was given", "give one")
        if self.host_key_fingerprint is not None and not self.host_key_fingerprint.startswith("SHA256:"):
            raise SpecError(
                "host_key_fingerprint", "is not a SHA256 fingerprint", "copy it from `ssh-keygen -l -f KEY`"
            )
        return self

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any], prefix: str = "ssh_", where: str = "") -> SshAccess:
        """Read settings named `<prefix><field>` (the Block's and the connection's `ssh_user`, ...).

        Empty values count as not given; errors name the caller's field (`where.ssh_port`).
        """
        values = {
            name: fields[prefix + name]
            for name in cls.model_fields
            if fields.get(prefix + name) not in (None, "")
        }
        try:
            return build_model(cls, values)
        except SpecError as error:
            raise SpecError(_named(error.field, prefix, where), error.problem, error.fix) from None

    @property
    def host_key_policy(self) -> HostKeyPolicy:
        """Verified by default, like OpenSSH: a given known_hosts file wins over a pinned fingerprint, and
        with neither the user's ~/.ssh/known_hosts is used. Only an explicit opt-out skips the check."""
        if self.skip_host_key_check:
            return "unverified"
        if self.known_hosts_file is None and self.host_key_fingerprint is not None:
            return "fingerprint"
        return "known_hosts"

    @property
    def known_hosts_path(self) -> Path:
        return Path(self.known_hosts_file or DEFAULT_KNOWN_HOSTS).expanduser()

    def check_files(self, prefix: str = "", where: str = "") -> None:
        """Raise SpecError unless the key and known_hosts files exist on this machine."""
        for name in ("private_key_file", "known_hosts_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).expanduser().is_file():
                raise SpecError(
                    _named(name, prefix, where),
                    f"{path!r} does not exist",
                    "give a file on the machine that opens the tunnel",
                )

    def load_private_key(self) -> paramiko.PKey | None:
        """The private key, read into memory (None for password login); SpecError if unreadable."""
        if self.private_key is not None:
            text, name = self.private_key.get_secret_value().strip() + "\n", "private_key"
        elif self.private_key_file is not None:
            name = "private_key_file"
            try:
                text = Path(self.private_key_file).expanduser().read_text()
            except (OSError, UnicodeDecodeError) as error:
                raise SpecError(
                    name, f"cannot read {self.private_key_file!r} ({type(error).__name__})"
                ) from None
        else:
            return None
        password = self.private_key_password.get_secret_value() if self.private_key_password else None
        for key_type in KEY_TYPES:
            try:
                return key_type.from_private_key(io.StringIO(text), password)
            except (paramiko.SSHException, ValueError):
                continue
        raise SpecError(
            name,
            "is not an RSA, ECDSA or Ed25519 private key paramiko can read (or private_key_password is wrong)",
            "give the key that logs in to the head",
        )


def _named(field: str, prefix: str, where: str) -> str:
    return f"{where}.{prefix}{field}" if where else f"{prefix}{field}"
