"""The output file: byte ranges written in place, and what is known to be on disk.

A download to ``DEST`` uses three names next to it, in the same directory (so that the final
rename is atomic and never crosses file systems)::

    DEST.part            the data, preallocated to its final size, written at any offset
    DEST.part.json       the control file: the ResumeKey and the byte ranges known to be on disk
    DEST.part.json.tmp   the next control file while it is written (then renamed over the last)

Theory of operation. ``write_at`` ``pwrite``s in a worker thread and, once the call returned,
adds the range to ``written`` (in memory). ``checkpoint`` snapshots ``written``, ``fdatasync``s
the data file and then atomically replaces the control file with the snapshot. Every range in
the snapshot was written before the ``fdatasync`` began, so the control file never claims a
byte that is not on disk, whenever the process is killed. A restart (the file changed on the
server) replaces the control file with an empty one *before* it truncates the data. ``written``
only grows; the control file is rewritten only when it changed.

``DEST`` itself appears only in ``finalize``, by an atomic rename (no-clobber unless ``force``).
The data file is ``flock``ed while open, so two processes cannot write the same download.

Files are handled like network input (see ``swarmget.safe_files``). Every name is opened
relative to a descriptor of the destination directory, never through a symbolic link; new
files are created with ``O_EXCL`` and mode 0600, the control file through a temporary
created afresh. An existing data or control file is resumed from only when it is a regular
file of this user that no one else can write and that has no other hard link; anything
else at those names (a link, a device, another user's file, a group-writable one) is left
untouched and the open fails with ``UntrustedFile`` (exit 6): a stranger's file is never
resumed, nor written into, nor silently replaced. The finished file gets mode 0644 minus
the umask, and the rename publishes exactly the inode that was written. ``force`` replaces
a regular file or a symbolic link at ``DEST`` (never the link's target), nothing else.

A size the file system cannot hold (more than its free space plus what the data file
already holds, or more than any file can be) fails with ``InsufficientStorage`` and one
over the caller's ``max_size`` with ``FileTooLarge``, both before anything is created;
these checks and the final rename live in ``swarmget.destination``.

The package: ``part`` (``PartFile`` and ``open_part_file``), ``opening`` (the checks, the
one read of the control file and its verdict from ``swarmget.core.resume``), ``control``
(the control file's format, reading and checkpoint writes), ``space`` (size and free-space
checks, preallocation) and ``writes`` (``pwrite`` at offsets in worker threads).

Unknown size (a chunked origin, one stream): ``ResumeKey.size`` is None. There is no
preallocation and no control file; writes must be sequential appends, and a later run always
starts over, because there is nothing to tell whether the origin still serves the same bytes.
"""

from __future__ import annotations

from swarmget.core.resume import ResumeKey, ResumeState
from swarmget.destination import check_destination, check_size
from swarmget.storage.control import (
    CONTROL_SUFFIX,
    PART_SUFFIX,
    control_path_for,
    current_boot_id,
    part_path_for,
    stored_resume_key,
)
from swarmget.storage.part import PartFile, open_part_file

__all__ = [
    "CONTROL_SUFFIX",
    "PART_SUFFIX",
    "PartFile",
    "ResumeKey",
    "ResumeState",
    "check_destination",
    "check_size",
    "control_path_for",
    "current_boot_id",
    "open_part_file",
    "part_path_for",
    "stored_resume_key",
]
