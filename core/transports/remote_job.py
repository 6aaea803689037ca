"""A step on a node is a durable job: a small POSIX-sh wrapper, sent with each command, starts
it in its own session and keeps its pid, exit status and output in a job directory on the node.

The contract (docs/remote-jobs.md): `sh -c WRAPPER rollgate-job VERB JOBDIR [ARGS]`, JOBDIR
being ROOT/RUN/JOB (ROOT/RUN for clean, ROOT for check). `%u` in it is the login's uid, so
each login has its own ROOT; the wrapper uses a ROOT only when it is a directory of that login
that nobody else can write to (it makes a missing one 0700), and refuses any other (exit 93).
  check               ROOT as the verbs would find it: prints `ok` (the login's own, private)
                      or `absent` (it will be made), else says why it is refused (exit 93)
  start CMD           mkdir JOBDIR (atomic); if new, start CMD under setsid with output to
                      JOBDIR/stdout and JOBDIR/stderr and its status to JOBDIR/status when it
                      ends; prints `started`, or `attached` when the job existed already
                      (the login's own directory; anything else it could not make: exit 97)
  attach OUT ERR      stream stdout from byte OUT and stderr from byte ERR until the job ends
  status              prints `exit N`, `running`, `lost` (no status and no process: the node
                      rebooted or the job was killed) or `unknown` (no such job directory)
  kill GRACE          TERM to the job's process group, KILL after GRACE seconds; prints
                      `terminated` once no process of the group is left (zombies aside), or
                      `alive` when some still run (or it cannot tell). A job not started yet
                      is cancelled: kill takes its directory, so a late `start` starts nothing
  clean               remove JOBDIR (a run's directory of jobs)
The node needs a POSIX sh, setsid (util-linux), GNU tail (--pid) and ps (procps): every
Ubuntu and Debian server has them.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shlex

from rollgate.core.transports.become import as_root

# each login its own job directory: %u is the login's uid, filled in on the node
DEFAULT_JOB_ROOT = "/var/tmp/rollgate-jobs-%u"
KILL_GRACE = 5  # seconds between TERM and KILL
REFUSED = 93  # the wrapper's exit status when the job directory is not the login's own

WRAPPER = r"""
set -u
verb=$1; shift
me=$(id -u)
d=$(printf '%s\n' "$1" | sed "s/%u/$me/g"); shift
refuse() { echo "rollgate-job: $1" >&2; exit 93; }
own() {  # $1, a job root: the login's own directory, writable by nobody else; made if missing
  if [ ! -e "$1" ] && [ ! -L "$1" ]; then
    [ "${2:-}" = look ] && { echo absent; exit 0; }
    (umask 077; mkdir -p -- "$1") 2>/dev/null || refuse "cannot make the job directory $1"
  fi
  [ -d "$1" ] && [ ! -L "$1" ] || refuse "the job directory $1 is not a directory"
  set -- "$1" $(ls -ldn -- "$1")
  [ "$4" = "$me" ] || refuse "the job directory $1 belongs to uid $4, not to this login \
(uid $me): Rollgate refuses it; give job_dir a place of this login's own (the default, \
/var/tmp/rollgate-jobs-%u, is one per login)"
  case $2 in d????-??-*) ;; *)
    refuse "the job directory $1 may be written by others ($2): Rollgate refuses it; \
chmod 0700 $1" ;;
  esac
}
case $verb in
  check) own "$d" look; echo ok; exit 0 ;;
  clean) own "${d%/*}" ;;
  *) own "${d%/*/*}" ;;
esac
pid_of() { cat "$d/pid" 2>/dev/null; }
group_alive() {
  ps -e -o pgid= -o stat= 2>/dev/null \
    | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { n++ } END { exit n == 0 }'
}
job_alive() {
  p=$(pid_of) || return 1
  [ -n "$p" ] && [ -r "/proc/$p/stat" ] || return 1
  set -- $(cat "/proc/$p/stat" 2>/dev/null)
  [ "${3:-Z}" != Z ] && [ "${22:-}" = "$(cat "$d/starttime" 2>/dev/null)" ]
}
case $verb in
start)
  umask 077
  mkdir -p -- "${d%/*}" || exit 97
  if mkdir -- "$d" 2>/dev/null; then
    : > "$d/stdout"; : > "$d/stderr"
    printf '%s\n' "$1" > "$d/command"
    setsid sh -c '
      cut -d" " -f22 /proc/$$/stat > "$0/starttime.tmp"; mv "$0/starttime.tmp" "$0/starttime"
      echo $$ > "$0/pid.tmp"; mv "$0/pid.tmp" "$0/pid"
      date +%s > "$0/started"
      sh -c "$1" < /dev/null >> "$0/stdout" 2>> "$0/stderr"
      echo $? > "$0/status.tmp"; mv "$0/status.tmp" "$0/status"
    ' "$d" "$1" < /dev/null > /dev/null 2>&1 &
    i=0
    while [ ! -s "$d/pid" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i + 1)); done
    [ -s "$d/pid" ] || { echo "rollgate-job: the job did not start" >&2; exit 98; }
    echo started
  elif [ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ]; then
    echo attached
  else
    echo "rollgate-job: cannot make the job directory $d" >&2; exit 97
  fi ;;
attach)
  [ -d "$d" ] || { echo "rollgate-job: no job $d on this node" >&2; exit 96; }
  o=$1; e=$2
  while :; do
    if [ -f "$d/status" ] || ! job_alive; then last=1; else last=0; fi
    n=$(wc -c < "$d/stdout")
    if [ "$n" -gt "$o" ]; then
      tail -c "+$((o + 1))" "$d/stdout" | head -c "$((n - o))"; o=$n
    fi
    n=$(wc -c < "$d/stderr")
    if [ "$n" -gt "$e" ]; then
      tail -c "+$((e + 1))" "$d/stderr" | head -c "$((n - e))" >&2; e=$n
    fi
    [ "$last" = 1 ] && break
    sleep 0.05
  done ;;
status)
  if [ -f "$d/status" ]; then echo "exit $(cat "$d/status")"
  elif [ ! -d "$d" ]; then echo unknown
  elif job_alive; then echo running
  elif [ -f "$d/status" ]; then echo "exit $(cat "$d/status")"
  else echo lost; fi ;;
kill)
  umask 077
  mkdir -p -- "${d%/*}" || exit 97
  if mkdir -- "$d" 2>/dev/null; then  # never started; and now a late start finds it taken
    : > "$d/cancelled"; echo terminated; exit 0
  fi
  i=0  # started, or starting: its pid is written within moments
  while [ ! -s "$d/pid" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i + 1)); done
  p=$(pid_of) || { echo alive; exit 0; }
  [ -n "$p" ] || { echo alive; exit 0; }
  kill -TERM "-$p" 2>/dev/null
  i=0
  while group_alive "$p" && [ $i -lt $(($1 * 10)) ]; do sleep 0.1; i=$((i + 1)); done
  if group_alive "$p"; then kill -KILL "-$p" 2>/dev/null; sleep 0.2; fi
  if group_alive "$p"; then echo alive; else echo terminated; fi ;;
clean)
  rm -rf -- "$d" ;;
*)
  echo "rollgate-job: unknown verb $verb" >&2; exit 95 ;;
esac
"""


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # what a job's file name replaces with "_"


def job_name(step_id: str, attempt: int) -> str:
    """A file name for (step, attempt), readable and unique: the same step and attempt always
    give the same name, so a job that was started is found again, never started twice."""
    slug = _UNSAFE.sub("_", step_id)[-60:].strip("_.")
    digest = hashlib.sha256(step_id.encode()).hexdigest()[:10]
    return f"{slug}-{digest}-{attempt}"


@functools.lru_cache(maxsize=64)  # asked once per step of a run, always the same answer
def run_dir(root: str, run_id: str) -> str:
    return f"{root.rstrip('/')}/{_UNSAFE.sub('_', run_id) or 'run'}"


def wrapper_command(
    verb: str, job_dir: str, *args: str | int, become: bool = False, password: bool = False
) -> str:
    """The command line that runs one verb of the wrapper on the node (as root with
    `become`: see become.py)."""
    words = ["sh", "-c", WRAPPER, "rollgate-job", verb, job_dir, *map(str, args)]
    line = " ".join(shlex.quote(w) for w in words)
    return as_root(line, password=password) if become else line
