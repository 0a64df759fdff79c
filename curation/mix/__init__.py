"""Mixture manifests: declarative data conditions built into shuffled Parquet shards with a lock file.

    manifest = load_manifest("mix.yaml")          # typed, errors name the file and line
    plan = make_plan(manifest)                     # what the build would take from each source
    result = build(manifest, "out/")               # shards + mix.lock.json + blend.json
    problems = verify("out/")                      # [] when inputs and outputs still match the lock

See docs/mix.md for the manifest reference, the presets, the lock and the trainer hand-off formats.
"""

from curation.mix.build import BuildResult, build
from curation.mix.manifest import Manifest, ManifestFile, load_manifest
from curation.mix.plan import Plan, make_plan
from curation.mix.presets import PRESETS, render_preset
from curation.mix.verify import verify

__all__ = [
    "BuildResult",
    "Manifest",
    "ManifestFile",
    "PRESETS",
    "Plan",
    "build",
    "load_manifest",
    "make_plan",
    "render_preset",
    "verify",
]
