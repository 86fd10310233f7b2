import { execFileSync } from 'node:child_process';

// CodebeGen's Python, verbatim in the parts that shape the disk (file_manager.py's
// save_generation_files_hierarchical, with its `active` link, and the old flat create_project_structure, with the
// .zip its create_zip_archive puts beside), run by python3. One process writes a whole batch.

const PY_HIERARCHICAL = String.raw`
import json, sys
from datetime import datetime
from pathlib import Path

manifests = []
for args in json.loads(sys.stdin.read()):
    storage = Path(args["storage"])
    project_id = args["project_id"]
    generation_id = args["generation_id"]
    version = args["version"]
    files = args["files"]
    generation_dir = storage / project_id / "generations" / f"v{version}__{generation_id}"
    source_dir = generation_dir / "source"
    artifacts_dir = generation_dir / "artifacts"
    source_dir.mkdir(parents=True, exist_ok=True)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "generation_id": generation_id,
        "project_id": project_id,
        "version": version,
        "created_at": datetime.utcnow().isoformat(),
        "file_count": len(files),
        "total_size_bytes": sum(len(content.encode('utf-8')) for content in files.values()),
        "files": list(files.keys()),
        "metadata": args.get("metadata") or {},
    }
    with open(generation_dir / "manifest.json", "w") as f:
        f.write(json.dumps(manifest, indent=2))
    for file_path, content in files.items():
        full_path = source_dir / file_path
        full_path.parent.mkdir(parents=True, exist_ok=True)
        full_path.write_text(content, encoding='utf-8')
    active_link = storage / project_id / "generations" / "active"
    if active_link.exists() or active_link.is_symlink():
        active_link.unlink()
    active_link.symlink_to(generation_dir.name)
    manifests.append(manifest)
print(json.dumps(manifests))
`;

const PY_FLAT = String.raw`
import json, sys, zipfile
from pathlib import Path

for args in json.loads(sys.stdin.read()):
    storage = Path(args["storage"])
    generation_id = args["generation_id"]
    project_dir = storage / generation_id
    project_dir.mkdir(parents=True, exist_ok=True)
    for file_path, content in args["files"].items():
        full_path = project_dir / file_path
        full_path.parent.mkdir(parents=True, exist_ok=True)
        full_path.write_text(content, encoding='utf-8')
    if args.get("zip"):
        with zipfile.ZipFile(storage / f"{generation_id}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for p in project_dir.rglob("*"):
                if p.is_file():
                    zf.write(p, p.relative_to(project_dir))
`;

export interface PyGeneration {
  project_id: string;
  generation_id: string;
  version: number;
  files: Record<string, string>;
  metadata?: Record<string, unknown>;
}

/** Writes hierarchical generations as CodebeGen does; returns the manifests Python wrote, in order. */
export function writePythonGenerations(storage: string, gens: PyGeneration[]): Record<string, unknown>[] {
  if (!gens.length) return [];
  const out = execFileSync('python3', ['-c', PY_HIERARCHICAL], { input: JSON.stringify(gens.map((g) => ({ storage, ...g }))), encoding: 'utf8' });
  return JSON.parse(out) as Record<string, unknown>[];
}

/** Writes old flat generations (`{storage}/{generation_id}/<files>`), with a .zip beside when `zip`. */
export function writePythonFlat(storage: string, gens: { generation_id: string; files: Record<string, string>; zip?: boolean }[]): void {
  if (gens.length) execFileSync('python3', ['-c', PY_FLAT], { input: JSON.stringify(gens.map((g) => ({ storage, ...g }))) });
}
