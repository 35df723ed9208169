"""`python -m localcloud up`: the local stack, kept running, for trying the app by hand.

Starts the stand-ins (managed identity, STS, API Gateway, Key Vault) and a full Azurite (blob,
queue, table), prints the app settings pointing at them as `export` lines, and stays up until
Ctrl-C or SIGTERM. In another shell, with those exported, `python -m shared ingest ...` runs
the CLI against the stack. `--write-local-settings` also writes a local.settings.json, so
`func start` (where the Core Tools are installed) or `python -m localcloud serve` runs the
function app over the same stack; both files are removed again when the stack stops.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from localcloud import localsettings
from localcloud.azurite import SERVICES
from localcloud.process import ShutdownSignals
from localcloud.stack import Stack, orders_source

__all__ = ["up"]

TRY_WINDOW = ("2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z")


def _say(line: str = "") -> None:
    print(line, flush=True)


def up(*, local_settings: Path | None = None, env_file: Path | None = None, force: bool = False) -> int:
    """Run the stack until a signal; 0 when stopped, 2 when a file to write belongs to someone else."""
    if local_settings is not None and local_settings.exists() and not force:
        try:
            ours = localsettings.read(local_settings).written_by_localcloud
        except localsettings.LocalSettingsError:
            ours = False
        if not ours:
            print(
                f"error: {local_settings} exists and was not written by `localcloud up`; "
                "move it away or pass --force to replace it",
                file=sys.stderr,
            )
            return 2
    with ShutdownSignals() as signals, Stack(azurite_services=SERVICES) as stack:
        cloud, azurite = stack.cloud, stack.azurite
        catalog = stack.write_catalog({"orders": orders_source(cloud.gateway_url)})
        env = stack.app_env(catalog)
        # SECRETS_PROVIDER=keyvault is the default; said explicitly so a shell's own setting is overridden.
        env["SECRETS_PROVIDER"] = "keyvault"
        ports = ", ".join(f"{service} :{port}" for service, port in azurite.ports.items())
        _say(f"# local stack up in {stack.workdir} (removed when it stops)")
        _say(f"#   managed identity {cloud.identity.url}, STS {cloud.sts.url},")
        _say(f"#   API Gateway {cloud.gateway_url}, Key Vault {cloud.keyvault.url}, Azurite {ports}")
        _say(f"#   catalog {catalog}: source 'orders' ({cloud.gateway_url}{cloud.orders_path}, IAM auth)")
        _say("# app settings (paste into another shell, or source the --env-file):")
        exports = [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
        for line in exports:
            _say(line)
        _say("# then, for example:")
        window = f"--from {TRY_WINDOW[0]} --to {TRY_WINDOW[1]}"
        _say(f"#   .venv/bin/python -m shared -v ingest --source orders {window}")
        _say("#   .venv/bin/python -m shared probe --source orders")

        written: dict[Path, bytes] = {}
        if env_file is not None:
            data = ("\n".join(exports) + "\n").encode()
            env_file.write_bytes(data)
            written[env_file] = data
            _say(f"# wrote {env_file}: `source {env_file}` in another shell")
        if local_settings is not None:
            values = localsettings.stack_values(env, azurite.connection_string)
            written[local_settings] = localsettings.write(local_settings, values)
            _say(f"# wrote {local_settings}: `func start` or `make serve` now runs the app over this stack")
        _say("# ready (Ctrl-C to stop)")
        try:
            signal_name = signals.wait()
            _say(f"# {signal_name}: stopping")
        finally:
            for path, data in written.items():
                _remove_if_unchanged(path, data)
    _say("# stopped")
    return 0


def _remove_if_unchanged(path: Path, data: bytes) -> None:
    """Remove a file this command wrote: it names ports that are about to close. Edited: kept."""
    try:
        if path.read_bytes() == data:
            path.unlink()
            _say(f"# removed {path}")
        else:
            _say(f"# kept {path}: it changed since it was written (its stack settings are stale now)")
    except FileNotFoundError:
        pass
