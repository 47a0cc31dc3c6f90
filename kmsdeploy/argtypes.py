"""argparse value types shared by every verb (one wording for every bad number)."""
from __future__ import annotations

import argparse
import os
from typing import Callable, Sequence


def whole_number(minimum: int) -> Callable[[str], int]:
    """A type accepting whole numbers >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return n

    parse.__name__ = f"whole number >= {minimum}"
    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)


def add_inventory_option(sp: argparse.ArgumentParser, required: bool = False) -> None:
    """``-i/--inventory``, repeatable, as ansible-playbook has it (sources merged in the order given)."""
    sp.add_argument("-i", "--inventory", required=required, action="append", metavar="SOURCE",
                    help="Ansible inventory: YAML or INI file, directory, executable script or JSON; repeatable")


def inventory_sources(inventory: Sequence[str] | str | None) -> list[str] | None:
    """``-i`` values as absolute paths (a saved plan keeps them joined by os.pathsep)."""
    if not inventory:
        return None
    given = inventory.split(os.pathsep) if isinstance(inventory, str) else list(inventory)
    return [os.path.abspath(p) for p in given]


def inventory_base_dir(inventory: Sequence[str] | str | None) -> str:
    """Where relative paths in host variables are resolved: the first source's directory."""
    sources = inventory_sources(inventory)
    return os.path.dirname(sources[0]) if sources else "."


def add_vault_options(sp: argparse.ArgumentParser) -> None:
    """``--vault-password-file`` and ``--vault-id`` (both repeatable), as ansible-playbook has them."""
    sp.add_argument("--vault-password-file", action="append", default=[], metavar="FILE",
                    help="Ansible Vault password: a file, or an executable that prints it (repeatable; "
                         "also $ANSIBLE_VAULT_PASSWORD_FILE)")
    sp.add_argument("--vault-id", action="append", default=[], metavar="[LABEL@]FILE",
                    help="a vault password with its vault id label (repeatable; also $ANSIBLE_VAULT_IDENTITY_LIST)")


def vault_secrets(args: argparse.Namespace):
    """The run's :class:`~kmsdeploy.spec.vault.VaultSecrets` from the options and the environment
    (read lazily: nothing is opened or run until a vault value needs it)."""
    import os

    from .errors import SecretError
    from .spec.vault import VaultError, VaultSecrets

    try:
        return VaultSecrets.from_options(getattr(args, "vault_password_file", None) or [],
                                         getattr(args, "vault_id", None) or [], os.environ)
    except VaultError as exc:
        raise SecretError(str(exc)) from None
