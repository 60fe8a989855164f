"""Peak memory of every test: the pytest process's and its subprocesses'.

Each test's own peak is the process's resident high-water mark (VmHWM),
reset before the test (``/proc/self/clear_refs``); its subprocesses' peak is
the largest resident size of a child it waited for
(``RUSAGE_CHILDREN``, which only grows: a test is charged with it when it
raised it). A test over the run's bound (``LIMITS_MB``: the fast tier's when
no slow test runs) fails at teardown, so a run cannot pass by luck on a
machine with memory to spare; the largest peaks are printed at the end of
the run.

Before a test, once the process has grown by ``RELEASE_AFTER_MB`` since
the last time, the garbage collector runs and glibc hands freed heap memory
back to the system (``malloc_trim``), so that what an earlier test freed is
not charged to the next one (at most that much is); what earlier tests keep
alive is. Releasing before every test cost half of the fast tier's time.
"""
import ctypes
import ctypes.util
import gc
import resource
from typing import List, Optional, Tuple

import pytest

# Peak resident memory, MB, of every process of a run of the fast tier
# (``-m "not slow"``) and of a run with the slow tests (the suite runs on
# machines of 24 GB, often beside other work).
LIMITS_MB = {'fast tier': 3072, 'whole suite': 6144}
_run = {'tier': 'whole suite'}
_peaks: List[Tuple[float, str]] = []
_growth: List[Tuple[float, str]] = []  # resident memory a test left behind
_libc = ctypes.CDLL(ctypes.util.find_library('c') or None)
RELEASE_AFTER_MB = 256
# resident MB after the last release, and before the last test with its id
_last = {'released': 0., 'before': None, 'test': None}


def _release_freed_memory() -> None:
    """Collect and trim, if the process grew enough since the last time."""
    rss = _own_rss_mb()
    if rss is not None and rss - _last['released'] < RELEASE_AFTER_MB:
        return
    gc.collect()
    if hasattr(_libc, 'malloc_trim'):  # glibc
        _libc.malloc_trim(0)
    _last['released'] = _own_rss_mb() or 0.


def _own_rss_mb() -> Optional[float]:
    try:
        with open('/proc/self/statm') as f:
            pages = int(f.read().split()[1])
    except OSError:
        return None
    return pages * resource.getpagesize() / 2**20


def _own_peak_mb() -> Optional[float]:
    try:
        with open('/proc/self/status') as f:
            line = next(x for x in f if x.startswith('VmHWM:'))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


def _reset_own_peak() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _children_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def pytest_collection_finish(session):
    """The bound of this run: the fast tier's when no slow test runs."""
    if not any(item.get_closest_marker('slow') for item in session.items):
        _run['tier'] = 'fast tier'


@pytest.fixture(autouse=True)
def peak_memory(request):
    """Fail the test if it, or a process it started, went over its bound."""
    _release_freed_memory()
    rss_before = _own_rss_mb()
    if _last['before'] is not None and rss_before is not None:
        # what the previous test left behind, its garbage mostly released
        _growth.append((rss_before - _last['before'], _last['test']))
    _last['before'], _last['test'] = rss_before, request.node.nodeid
    own_before = None if _reset_own_peak() else _own_peak_mb()
    children_before = _children_peak_mb()
    yield
    own, children = _own_peak_mb(), _children_peak_mb()
    tier = _run['tier']
    limit = LIMITS_MB[tier]
    found = []
    if own is not None and (own_before is None or own > own_before):
        found.append(('pytest process', own))
    if children > children_before:
        found.append(('subprocess', children))
    for what, mb in found:
        _peaks.append((mb, f'{request.node.nodeid} ({what})'))
    over = [f'{what} {mb:.0f} MB' for what, mb in found if mb > limit]
    if over:
        pytest.fail(f'peak resident memory over the {limit} MB bound of the '
                    f'{tier}: {", ".join(over)}', pytrace=False)


def pytest_terminal_summary(terminalreporter):
    if not _peaks:
        return
    terminalreporter.write_sep('-', 'largest peak resident memory (MB)')
    for mb, what in sorted(_peaks, reverse=True)[:5]:
        terminalreporter.write_line(f'{mb:8.0f}  {what}')
    terminalreporter.write_line(
        f'bound of this run ({_run["tier"]}): {LIMITS_MB[_run["tier"]]} MB a '
        f'process (tests/memory_guard.py)')
    if _growth:
        terminalreporter.write_line(
            f'pytest process at the end: {_own_rss_mb():.0f} MB resident; '
            f'grew most in: ' + ', '.join(
                f'{name} (+{mb:.0f} MB)'
                for mb, name in sorted(_growth, reverse=True)[:3]))
