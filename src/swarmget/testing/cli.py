"""``swarmget`` on the command line as a user runs it, for the tests of the CLI.

``run_cli(*args)`` runs ``python -m swarmget.cli ARGS`` (this interpreter) in a child
process, waits for it and returns ``(returncode, stdout, stderr)``, both outputs decoded.
Keyword options cover what the tests vary:

* ``env``: variables laid over this process's environment (never instead of it);
* ``cwd``: the child's working directory (this process's by default);
* ``timeout``: seconds the child may take, after which it is killed and ``TimeoutError``
  raised;
* ``input``: text written to the child's standard input, which is then closed (without
  it the child inherits this process's);
* ``prefix``: a command the CLI runs under, put before the interpreter (``setpriv
  --reuid=65534 ...`` to run it as another user).

The child never outlives the call: on a timeout, or when the caller is cancelled, it is
killed and reaped before the exception goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence

__all__ = ["CLI", "run_cli"]

#: how the tests start the command line: this interpreter, the package's ``cli`` module
CLI: tuple[str, ...] = (sys.executable, "-m", "swarmget.cli")


async def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,  # noqa: ASYNC109 (the child's bound: it is killed at the end)
    input: str | None = None,
    prefix: Sequence[str] = (),
) -> tuple[int, str, str]:
    """Run ``swarmget ARGS`` to its end: ``(returncode, stdout, stderr)``."""
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        *CLI,
        *args,
        stdin=None if input is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(None if input is None else input.encode())
    except BaseException:  # the timeout, or the caller cancelled: the child goes too
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None  # communicate() waited for it
    return proc.returncode, out.decode(), err.decode()
