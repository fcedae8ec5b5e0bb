"""Named models: the manifest, the cache, bounded and verified downloads, and the import of official files.

One front for six small modules, each with one concern:

- `manifest`: the list of named models, parsed once; `resolve_model`, the one resolver of model names.
- `cache`: where converted files live, the index of their checksums, the lock between processes.
- `progress`: what a download reports (the CLI draws it).
- `limits`, `transfer`, `drive`, `archive`: bounded, resumable HTTP transfers; Google Drive's
  confirmation page; one member out of a zip (by byte ranges where the server allows).
- `install`: pull = fetch + verify + convert + record; `ensure_model` for the engine.
- `manage`: `import`, `verify`, `rm`; `foreign`: other tools' download folders.

Only the standard library talks HTTP; torch is imported only when a file is converted.
"""

from __future__ import annotations

from inpaint_cli.weights.cache import (
    CONVERTED_SUFFIX,
    DOWNLOADS_DIR,
    INDEX_NAME,
    cache_dir,
    cache_record,
    cached_path,
    converted_path,
    file_digests,
    file_sha256,
)
from inpaint_cli.weights.foreign import find_foreign_checkpoints, model_for_file, torch_hub_checkpoints_dir
from inpaint_cli.weights.install import ensure_model, offline_mode, pull, works_offline_hint
from inpaint_cli.weights.limits import DownloadLimits, limits_from_env
from inpaint_cli.weights.manage import Verification, import_file, remove, verify
from inpaint_cli.weights.manifest import (
    BUNDLED_DIR,
    MANIFEST_PATH,
    ModelEntry,
    Source,
    bundled_names,
    get_entry,
    known_model_names,
    load_manifest,
    resolve_model,
)
from inpaint_cli.weights.progress import DownloadProgress, SilentProgress

__all__ = [
    "BUNDLED_DIR",
    "CONVERTED_SUFFIX",
    "DOWNLOADS_DIR",
    "INDEX_NAME",
    "MANIFEST_PATH",
    "DownloadLimits",
    "DownloadProgress",
    "ModelEntry",
    "SilentProgress",
    "Source",
    "Verification",
    "bundled_names",
    "cache_dir",
    "cache_record",
    "cached_path",
    "converted_path",
    "ensure_model",
    "file_digests",
    "file_sha256",
    "find_foreign_checkpoints",
    "get_entry",
    "import_file",
    "known_model_names",
    "limits_from_env",
    "load_manifest",
    "model_for_file",
    "offline_mode",
    "pull",
    "remove",
    "resolve_model",
    "torch_hub_checkpoints_dir",
    "verify",
    "works_offline_hint",
]
