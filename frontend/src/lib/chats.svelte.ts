/** The sidebar's chat list: load, search, and the per-chat actions. */

import { api, query } from "./api/client";
import type { ChatListItem, ChatPage, SearchResult } from "./api/types";

interface ChatList {
  items: ChatListItem[];
  nextCursor: string | null;
  loading: boolean;
  archived: boolean;
  query: string;
  results: ChatListItem[] | null;
}

export const chatList = $state<ChatList>({
  items: [],
  nextCursor: null,
  loading: false,
  archived: false,
  query: "",
  results: null,
});

export async function loadChats(more = false): Promise<void> {
  chatList.loading = true;
  try {
    const { items, next_cursor } = await api.get<ChatPage>(
      "/api/chats" +
        query({
          limit: 50,
          cursor: more ? chatList.nextCursor : null,
          archived: chatList.archived ? true : null,
        }),
    );
    chatList.items = more ? [...chatList.items, ...items] : items;
    chatList.nextCursor = next_cursor;
  } finally {
    chatList.loading = false;
  }
}

export async function searchChats(q: string): Promise<void> {
  chatList.query = q;
  if (!q.trim()) {
    chatList.results = null;
    return;
  }
  const body = await api.get<SearchResult>("/api/chats/search" + query({ q }));
  if (chatList.query !== q) return;
  // Hits are messages; the sidebar lists each matching chat once.
  const seen = new Map<string, ChatListItem>();
  for (const hit of body.items) {
    if (!seen.has(hit.chat_id)) {
      const known = chatList.items.find((c) => c.id === hit.chat_id);
      seen.set(hit.chat_id, known ?? {
        id: hit.chat_id,
        title: hit.title,
        created_at: hit.updated_at,
        updated_at: hit.updated_at,
      });
    }
  }
  chatList.results = [...seen.values()];
}

export async function updateChat(
  id: string,
  patch: { title?: string; pinned?: boolean; archived?: boolean },
): Promise<void> {
  const updated = await api.patch<ChatListItem>(`/api/chats/${encodeURIComponent(id)}`, patch);
  const merge = (c: ChatListItem) => (c.id === id ? { ...c, ...patch, ...updated } : c);
  chatList.items = chatList.items.map(merge);
  if (patch.archived !== undefined && patch.archived !== chatList.archived) {
    chatList.items = chatList.items.filter((c) => c.id !== id);
  }
  if (chatList.results) chatList.results = chatList.results.map(merge);
}

export async function deleteChat(id: string): Promise<void> {
  await api.delete(`/api/chats/${encodeURIComponent(id)}`);
  chatList.items = chatList.items.filter((c) => c.id !== id);
  if (chatList.results) chatList.results = chatList.results.filter((c) => c.id !== id);
}

/** A chat the screen just created or touched goes to the top without a reload. */
export function touchChat(chat: ChatListItem): void {
  const rest = chatList.items.filter((c) => c.id !== chat.id);
  const known = chatList.items.find((c) => c.id === chat.id);
  chatList.items = [{ ...known, ...chat }, ...rest];
}

export type Group = { label: string; chats: ChatListItem[] };

/** Pinned first, then Today / Yesterday / Previous 7 days / Previous 30 days / by month. */
export function groupByRecency(chats: readonly ChatListItem[], now = new Date()): Group[] {
  const startOfToday = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const day = 86_400_000;
  const groups = new Map<string, ChatListItem[]>();
  const add = (label: string, chat: ChatListItem) => {
    const list = groups.get(label) ?? [];
    list.push(chat);
    groups.set(label, list);
  };
  const sorted = [...chats].sort((a, b) => Date.parse(b.updated_at) - Date.parse(a.updated_at));
  for (const chat of sorted) {
    if (chat.pinned) {
      add("Pinned", chat);
      continue;
    }
    const t = Date.parse(chat.updated_at);
    if (t >= startOfToday) add("Today", chat);
    else if (t >= startOfToday - day) add("Yesterday", chat);
    else if (t >= startOfToday - 7 * day) add("Previous 7 days", chat);
    else if (t >= startOfToday - 30 * day) add("Previous 30 days", chat);
    else add(new Date(t).toLocaleDateString(undefined, { year: "numeric", month: "long" }), chat);
  }
  return [...groups].map(([label, list]) => ({ label, chats: list }));
}
