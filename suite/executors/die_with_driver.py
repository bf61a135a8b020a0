"""Imported only by the forkserver of the local executor (first in its preload list): ties the
forkserver's life to the driver's with Linux's parent-death signal, so a driver that dies of
any signal takes the forkserver with it at once, instead of after the seconds a Python with
torch loaded takes to shut down. (Its workers exit on their own: see local.py.)"""

import ctypes
import signal

PR_SET_PDEATHSIG = 1

try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
except (OSError, AttributeError):  # not Linux: the forkserver exits when the driver's pipe
    pass                           # closes, only later
