"""Imported first by the classify forkserver (`executors.start_forkserver` preloads it), and only there: the forkserver
dies with the process that started it (named by CURATE_FORKSERVER_PARENT), and so, in turn, do the pool workers it
forks (`executors.ShardTolerantLocalExecutor` gives them the same lifeline)."""

import os

from curation.core.lifeline import die_with_parent

_parent = os.environ.get("CURATE_FORKSERVER_PARENT")
if _parent and _parent.isdigit():
    die_with_parent(int(_parent))
