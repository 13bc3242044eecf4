"""Killed processes, scratch-file sweeping and concurrent use.

Real subprocesses are started, killed with SIGKILL, and raced against each
other; threads write pixels while others read them.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import napari_diskimage as ndi
from napari_diskimage._scratch import SCRATCH_PATTERN


def spawn(code: str, *args: str) -> subprocess.Popen:
    """Start ``code`` in a new interpreter, talking line by line."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(proc: subprocess.Popen, timeout: float = 30) -> str:
    """The next stdout line of ``proc``; fail with its stderr if it died."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()))
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        proc.kill()
        pytest.fail(f"subprocess gave no line: {proc.communicate()[1]}")
    return result[0].strip()


def dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def scratch_name(pid: int, token: str, geometry: str = "4x4_UInt8") -> str:
    return f"ndi-{pid}-{token}_{geometry}.raw"


# --- a process killed in the middle of a copy -------------------------------
COPY_AND_HANG = """
import sys, time
import numpy as np
import napari_diskimage as ndi
pixels = np.full((8, 1024, 1024), 7, np.uint8)

def progress(done, total):
    if 0 < done < total:
        path = next(ndi.get_disk_image_dir().glob("ndi-*"))
        print(path, done, total, flush=True)
        time.sleep(600)            # killed here, mid-copy

ndi.copy(pixels, progress=progress, block_bytes=1 << 20)  # a middle step
"""


def test_sigkill_mid_copy_leaves_a_file_that_the_next_allocation_sweeps(
    disk_image_dir,
):
    proc = spawn(COPY_AND_HANG)
    path, done, total = read_line(proc).split()
    orphan = Path(path)
    assert 0 < int(done) < int(total)
    assert orphan.parent == disk_image_dir
    assert f"ndi-{proc.pid}-" in orphan.name
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert orphan.exists()  # nobody could delete it

    # this process knows nothing about it; its next allocation sweeps it
    with ndi.new_disk_image(ndi.Geometry("uint8", 4, 4)) as img:
        assert not orphan.exists()
        assert [p.name for p in disk_image_dir.iterdir()] == [img.path.name]
    assert list(disk_image_dir.iterdir()) == []


HOLD_SCRATCH = """
import sys
import napari_diskimage as ndi
img = ndi.new_disk_image(ndi.Geometry("uint16", 8, 8, 2))
img.write_pixel(1234, 7, 7, 1)
print(img.path, flush=True)
sys.stdin.readline()               # until the test says so
print(int(img.load_plane(z=1)[7, 7]), flush=True)
"""

HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


def test_sweep_removes_only_orphans(disk_image_dir, data_dir):
    """Files of running processes, locked files, symlinks, folders and
    files that merely look similar all survive a sweep; only the scratch
    file of a dead process that nobody holds is removed."""
    disk_image_dir.mkdir(exist_ok=True)
    gone = dead_pid()
    victim = data_dir / "precious.raw"
    victim.write_bytes(b"do not delete")
    orphan = disk_image_dir / scratch_name(gone, "0123456789abcdef")
    locked = disk_image_dir / scratch_name(gone, "fedcba9876543210")
    locked.write_bytes(bytes(16))  # e.g. inherited by a forked child
    keep = {
        "notes.txt": "x",
        "mydata_4x4_UInt8.raw": "x",
        f"ndi-{gone}-short_4x4_UInt8.raw": "x",
        f"ndi-{gone}-0123456789abcdef_4x4_UInt8.tif": "x",
        f"xndi-{gone}-0123456789abcdef_4x4_UInt8.raw": "x",
    }
    for name, text in keep.items():
        (disk_image_dir / name).write_text(text)
    link = disk_image_dir / scratch_name(gone, "aaaaaaaaaaaaaaaa")
    link.symlink_to(victim)
    folder = disk_image_dir / scratch_name(gone, "bbbbbbbbbbbbbbbb")
    folder.mkdir()

    lock_holder = spawn(HOLD_LOCK, str(locked))
    assert read_line(lock_holder) == "locked"
    holder = spawn(HOLD_SCRATCH)  # its allocation sweeps too
    try:
        live = Path(read_line(holder))
        orphan.write_bytes(bytes(16))
        removed = ndi.sweep_orphans()
        assert removed == [orphan]
        # a second sweep, through an allocation in this process
        with ndi.new_disk_image(ndi.Geometry("uint8", 2, 2)) as mine:
            assert ndi.sweep_orphans() == []
            assert mine.path.exists()
        expected = {*keep, live.name, locked.name, link.name, folder.name}
        assert {p.name for p in disk_image_dir.iterdir()} == expected
        assert victim.read_bytes() == b"do not delete"
        # the running process still has its pixels
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert read_line(holder) == "1234"
    finally:
        for proc in (holder, lock_holder):
            proc.communicate("go\n", timeout=30)
    assert holder.returncode == 0
    assert not live.exists()  # its owner deleted it on exit
    # the lock holder is gone too: now the file is an orphan
    assert ndi.sweep_orphans() == [locked]


@pytest.fixture(autouse=True)
def _tidy_up(disk_image_dir):
    """Remove look-alike files a test planted, before the leftover check."""
    yield
    if disk_image_dir.is_dir():
        for p in disk_image_dir.iterdir():
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            elif p.is_symlink() or not SCRATCH_PATTERN.match(p.name):
                p.unlink()  # real scratch files stay, for the check


SWEEP_AT_ONCE = """
import json, sys, time
from pathlib import Path
from napari_diskimage import sweep_orphans
folder, start = Path(sys.argv[1]), float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
try:
    removed = [p.name for p in sweep_orphans(folder)]
    print(json.dumps({"removed": removed, "error": None}))
except Exception as exc:
    print(json.dumps({"removed": [], "error": repr(exc)}))
"""

ALLOCATE_IN_A_LOOP = """
import json, sys, time
import napari_diskimage as ndi
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
held, errors = [], []
for i in range(30):
    try:
        img = ndi.new_disk_image(ndi.Geometry("uint8", 4, 4))
        img.write_pixel(i, 1, 1)
        held.append(img)
    except Exception as exc:
        errors.append(repr(exc))
values = [int(img.load_plane()[1, 1]) for img in held]
print(json.dumps({"values": values, "errors": errors}), flush=True)
"""


def test_two_processes_sweeping_at_once_do_not_race(disk_image_dir):
    """Two sweepers and an allocating process start at the same instant
    over 300 orphans: each orphan is removed exactly once, no sweeper
    fails, and none of the live process's files is touched."""
    disk_image_dir.mkdir(exist_ok=True)
    pid = dead_pid()
    orphans = {scratch_name(pid, f"{i:016x}") for i in range(300)}
    for name in orphans:
        (disk_image_dir / name).write_bytes(bytes(16))
    start = time.time() + 1.5  # all three are importing meanwhile
    sweepers = [spawn(SWEEP_AT_ONCE, str(disk_image_dir), str(start)) for _ in "ab"]
    allocator = spawn(ALLOCATE_IN_A_LOOP, str(start))
    results = [json.loads(read_line(p)) for p in sweepers]
    allocated = json.loads(read_line(allocator))
    for proc in (*sweepers, allocator):
        proc.communicate(timeout=30)
    assert [r["error"] for r in results] == [None, None]
    first, second = (set(r["removed"]) for r in results)
    assert not first & second  # nothing removed twice
    assert first | second <= orphans
    # the allocator also swept (each allocation does): all gone, once
    assert list(disk_image_dir.iterdir()) == []
    assert allocated == {"values": list(range(30)), "errors": []}


# --- concurrent use in one process ------------------------------------------
def test_pixel_writes_while_other_threads_read_planes():
    """One thread writes pixels (in rounds 1..R, value r * 257 so that both
    bytes of a uint16 are r) while threads read the plane through
    load_plane, read_region and the memory map, as napari would.

    Every value read must be a whole value written (both bytes equal, never
    torn), no pixel may go back to an older round, and at the end every
    read equals what was written.
    """
    rounds, ny, nx = 12, 24, 40
    img = ndi.new_disk_image(ndi.Geometry("uint16", nx, ny, 2))
    stop = threading.Event()
    problems: list[str] = []
    reads = {"load_plane": 0, "read_region": 0, "memmap": 0}

    def check(name: str, values: np.ndarray, last: np.ndarray) -> None:
        hi, lo = values >> 8, values & 0xFF
        if (hi != lo).any() or (hi > rounds).any():
            problems.append(f"{name}: torn or unknown values {np.unique(values)}")
        if (values < last).any():
            problems.append(f"{name}: a pixel went back to an older value")
        last[...] = np.maximum(last, values)
        reads[name] += 1

    def reader(name: str, read) -> None:
        last = np.zeros((ny, nx), np.uint16)
        while not stop.is_set():
            check(name, read(), last)

    readers = [
        threading.Thread(
            target=reader, args=("load_plane", lambda: img.load_plane(z=1))
        ),
        threading.Thread(
            target=reader,
            args=("read_region", lambda: img.read_region(0, 0, 1, 0, ny, 1, 0, nx, 1)),
        ),
        threading.Thread(
            target=reader, args=("memmap", lambda: np.array(img.array[0, 0, 1]))
        ),
    ]
    for t in readers:
        t.start()
    try:
        for r in range(1, rounds + 1):
            for y in range(ny):
                for x in range(nx):
                    img.write_pixel(r * 257, x, y, 1)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not problems, problems[:5]
    assert min(reads.values()) > 3, reads  # the readers did run meanwhile
    expected = np.full((ny, nx), rounds * 257, np.uint16)
    np.testing.assert_array_equal(img.load_plane(z=1), expected)
    np.testing.assert_array_equal(img.array[0, 0, 1], expected)
    np.testing.assert_array_equal(img.load_plane(z=0), 0)  # other plane intact
    img.close()


def test_display_levels_read_while_pixels_are_written():
    """napari slicing (the display pyramid, with its plane cache) in one
    thread while another writes pixels: never a torn value, and once the
    writes stop every level shows exactly the file, nothing stale."""
    from napari_diskimage.display import DisplayLevel

    rounds, ny, nx = 6, 32, 48
    img = ndi.new_disk_image(ndi.Geometry("uint16", nx, ny, 2))
    levels = [DisplayLevel(img, 0, f) for f in (1, 2, 4)]
    stop = threading.Event()
    problems: list[str] = []
    reads = [0]

    def slice_like_napari() -> None:
        while not stop.is_set():
            for level in levels:
                plane = np.asarray(level[1])  # z = 1, as napari slices it
                if ((plane >> 8) != (plane & 0xFF)).any():
                    problems.append(f"torn values {np.unique(plane)}")
            reads[0] += 1

    reader = threading.Thread(target=slice_like_napari)
    reader.start()
    rng = np.random.default_rng(3)
    ref = np.zeros((ny, nx), np.uint16)
    try:
        for r in range(1, rounds + 1):
            for _ in range(300):
                y, x = int(rng.integers(ny)), int(rng.integers(nx))
                img.write_pixel(r * 257, x, y, 1)
                ref[y, x] = r * 257
    finally:
        stop.set()
        reader.join()
    assert not problems, problems[:3]
    assert reads[0] > 3
    for level, f in zip(levels, (1, 2, 4), strict=True):
        np.testing.assert_array_equal(np.asarray(level[1]), ref[::f, ::f])
    img.close()


def test_threads_writing_different_pixels_all_land():
    """Four threads start writing into a fresh image at once (so they race
    to open its file descriptor); every pixel they wrote is there."""
    img = ndi.new_disk_image(ndi.Geometry("int32", 50, 40))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def write(k: int) -> None:
        barrier.wait()
        try:
            for y in range(k, 40, 4):
                for x in range(50):
                    img.write_pixel(-(y * 50 + x), x, y)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    np.testing.assert_array_equal(
        img.load_plane(), -np.arange(2000, dtype=np.int32).reshape(40, 50)
    )
    assert len([fd for fd in img.storage._fds]) <= 2  # one reader, one writer fd
    img.close()


def test_two_disk_images_on_one_file_see_each_others_writes(data_dir):
    path = data_dir / "shared_16x8x2_UInt16.raw"
    np.zeros((2, 8, 16), np.uint16).tofile(path)
    with ndi.open_raw(path, mode="r+") as a, ndi.open_raw(path, mode="r+") as b:
        a.write_pixel(111, 3, 4, 1)
        assert b.load_plane(z=1)[4, 3] == 111
        assert b.array[0, 0, 1, 4, 3] == 111  # through b's memory map
        b.write_pixel(222, 15, 7, 0)
        assert a.load_plane(z=0)[7, 15] == 222
        assert a.read_region(0, 0, 0, 7, 1, 1, 15, 1, 1)[0, 0] == 222
        a.array[0, 0, 0, 0, 0] = 333  # a memory-map write ...
        assert b.load_plane(z=0)[0, 0] == 333  # ... is seen by pread
        # ... and another program sees all of it without a flush
        raw = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys; sys.stdout.write(open({str(path)!r}, 'rb').read().hex())",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        seen = np.frombuffer(bytes.fromhex(raw), "<u2").reshape(2, 8, 16)
        assert (seen[1, 4, 3], seen[0, 7, 15], seen[0, 0, 0]) == (111, 222, 333)
    # a read-only third opener sees the file as left
    with ndi.open_raw(path) as c:
        assert c.load_plane(z=1)[4, 3] == 111


def test_scratch_file_lock_is_held_and_not_leaked_to_children(data_dir):
    """The owner holds its scratch file's lock (so sweepers skip it even if
    its pid were reused) and programs it starts do not inherit the file."""
    with ndi.new_disk_image(ndi.Geometry("uint8", 4, 4)) as img:
        fd = os.open(img.path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        child = subprocess.run(
            ["ls", "-l", "/proc/self/fd"], capture_output=True, text=True, check=True
        )
        assert img.path.name not in child.stdout


SAVE_AND_HANG = """
import sys, time
import numpy as np
import napari_diskimage as ndi
from napari_diskimage.io import atomic
if sys.argv[2] == "named":  # a file system without O_TMPFILE (NFS ...)
    atomic.open_anonymous = lambda folder: None
pixels = np.full((8, 1024, 1024), 7, np.uint8)
save = ndi.save_tiff if sys.argv[1].endswith(".tif") else ndi.save_raw

def progress(done, total):
    if 0 < done < total:
        print(done, total, flush=True)
        time.sleep(600)            # killed here, mid-save

save(pixels, sys.argv[1], progress=progress, block_bytes=1 << 20)
"""


@pytest.fixture
def tmpfs_dir():
    """A folder on a file system with O_TMPFILE (tmpfs; ext4, xfs and btrfs
    have it too, overlayfs and NFS do not)."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm tmpfs here")
    folder = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="ndi-save-"))
    yield folder
    shutil.rmtree(folder)


@pytest.mark.parametrize("temporary", ["unnamed", "named"])
@pytest.mark.parametrize("name", ["out.tif", "out.raw"])
def test_sigkill_mid_save_leaves_the_previous_file_and_no_temporary(
    tmpfs_dir, name, temporary
):
    """A process killed mid-save leaves the previous file.  Its temporary
    file has no name until complete (O_TMPFILE), or, where the system lacks
    that, is a locked '.part' file that the next save to the target removes.
    """
    target = tmpfs_dir / name
    target.write_bytes(b"previous version")
    proc = spawn(SAVE_AND_HANG, str(target), temporary)
    done, total = map(int, read_line(proc).split())
    assert 0 < done < total
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"previous version"
    left = sorted(p.name for p in tmpfs_dir.iterdir())
    if temporary == "unnamed":
        assert left == [name]
        return
    (part,) = (n for n in left if n != name)
    assert part.startswith(f".{name}.ndi-{proc.pid}-") and part.endswith(".part")
    # another file's save leaves it alone; the next save to the target
    # removes it
    ndi.save_raw(np.zeros(4, np.uint8), tmpfs_dir / "other.raw")
    assert part in {p.name for p in tmpfs_dir.iterdir()}
    save = ndi.save_tiff if name.endswith(".tif") else ndi.save_raw
    save(np.ones((2, 3), np.uint8), target)
    assert sorted(p.name for p in tmpfs_dir.iterdir()) == sorted([name, "other.raw"])
