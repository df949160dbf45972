"""Write the backend's OpenAPI document and the WebSocket event schemas for the frontend.

`npm run gen:api` turns openapi.json into TypeScript; a vitest test holds the hand-written
WebSocket types (src/lib/ws/events.ts) against events.schema.json. Run from the repository
root: `uv run python frontend/scripts/dump_schemas.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import TypeAdapter

from webui_backend.main import create_app
from webui_backend.schemas import events, turns
from webui_backend.settings import Settings

_OUT = Path(__file__).resolve().parents[1] / "src" / "lib" / "api"


def _event_models() -> dict[str, type]:
    """Every pydantic model in the events and turns modules, by class name."""
    found: dict[str, type] = {}
    for module in (events, turns):
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and value.__name__ == name
                and getattr(value, "__module__", "") == module.__name__
                and hasattr(value, "model_json_schema")
            ):
                found[name] = value
    return found


def main() -> int:
    # Settings() reads nothing that must exist: building the app does not start it.
    app = create_app(Settings(migrate_on_startup=False))
    _write(_OUT / "openapi.json", app.openapi())
    schemas = {
        name: TypeAdapter(model).json_schema(mode="serialization")
        for name, model in sorted(_event_models().items())
    }
    _write(_OUT / "events.schema.json", schemas)
    return 0


def _write(path: Path, document: object) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    sys.exit(main())
