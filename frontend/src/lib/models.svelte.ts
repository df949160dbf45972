/** Models the user may use (`GET /api/models`) and the one picked for new messages. */

import { api, ApiError } from "./api/client";
import type { ModelInfo, ModelList } from "./api/types";

const STORAGE_KEY = "model";

export const models = $state<{ items: ModelInfo[]; selected: string; error: string | null }>({
  items: [],
  selected: localStorage.getItem(STORAGE_KEY) ?? "",
  error: null,
});

export async function loadModels(): Promise<void> {
  try {
    const items = (await api.get<ModelList>("/api/models")).items.filter((m) => m.enabled);
    models.items = items;
    models.error = null;
    if (models.selected && !items.some((m) => m.id === models.selected)) models.selected = "";
  } catch (error) {
    models.items = [];
    models.error = error instanceof ApiError ? error.message : String(error);
  }
}

export function selectModel(id: string): void {
  models.selected = id;
  if (id) localStorage.setItem(STORAGE_KEY, id);
  else localStorage.removeItem(STORAGE_KEY);
}
