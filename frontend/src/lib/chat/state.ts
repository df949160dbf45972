/**
 * The chat screen's state as a pure reducer: a tree of messages, the leaf of the branch on
 * screen, and for each live reply the last `seq` applied.
 *
 * Streamed events are keyed by `seq`: an event at or below the last applied one is a
 * duplicate (a resume after a reconnect, a second subscription) and changes nothing, so a
 * reply never shows a word twice however often it is resumed.
 */

import type { TurnAccepted, TurnEvent, TurnStatus } from "../ws/events";

export type MessageStatus = "streaming" | TurnStatus;

export interface ChatMessage {
  id: string;
  parent_id: string | null;
  role: string;
  content: string;
  status: MessageStatus;
  model: string | null;
  finish_reason: string | null;
  error: string | null;
}

export interface ChatDetailLike {
  id: string;
  current_message_id: string | null;
  messages: readonly ChatMessage[];
  active_branch?: readonly string[];
}

export interface ChatState {
  chatId: string | null;
  messages: Readonly<Record<string, ChatMessage>>;
  /** Message ids in creation order: siblings are shown in this order. */
  order: readonly string[];
  /** The last message of the branch on screen. */
  leaf: string | null;
  /** Last applied `seq` per reply still being followed. */
  seqs: Readonly<Record<string, number>>;
  /** Replies loaded from storage mid-stream: their text is rebuilt from the first event. */
  replaying: Readonly<Record<string, true>>;
}

export const emptyChat: ChatState = {
  chatId: null,
  messages: {},
  order: [],
  leaf: null,
  seqs: {},
  replaying: {},
};

/** State from a stored chat. Replies still streaming will be replayed from `seq` 0. */
export function loadChat(detail: ChatDetailLike): ChatState {
  const messages: Record<string, ChatMessage> = {};
  const seqs: Record<string, number> = {};
  const replaying: Record<string, true> = {};
  for (const m of detail.messages) {
    messages[m.id] = { ...m, status: m.status as MessageStatus };
    if (m.status === "streaming") {
      seqs[m.id] = 0;
      replaying[m.id] = true;
    }
  }
  const branch = detail.active_branch ?? [];
  const leaf = detail.current_message_id ?? branch[branch.length - 1] ?? null;
  return {
    chatId: detail.id,
    messages,
    order: detail.messages.map((m) => m.id),
    leaf: leaf !== null && leaf in messages ? leaf : null,
    seqs,
    replaying,
  };
}

/** The server stored the user's message and an empty reply: show both, follow the reply. */
export function acceptTurn(
  state: ChatState,
  ev: TurnAccepted,
  sent: { content: string; parentId: string | null; model: string | null },
): ChatState {
  // A regenerated reply answers a stored user message; a continued reply is a stored reply
  // that streams again (its events continue its seq numbering).
  const storedUser = state.messages[ev.user_message_id];
  const storedReply = state.messages[ev.assistant_message_id];
  const user: ChatMessage = storedUser ?? {
    id: ev.user_message_id,
    parent_id: sent.parentId,
    role: "user",
    content: sent.content,
    status: "complete",
    model: null,
    finish_reason: null,
    error: null,
  };
  const reply: ChatMessage = storedReply
    ? { ...storedReply, status: "streaming", finish_reason: null, error: null }
    : {
        id: ev.assistant_message_id,
        parent_id: ev.user_message_id,
        role: "assistant",
        content: "",
        status: "streaming",
        model: sent.model,
        finish_reason: null,
        error: null,
      };
  const known = new Set(state.order);
  const fresh = [user.id, reply.id].filter((id) => !known.has(id));
  return {
    ...state,
    chatId: ev.chat_id,
    messages: { ...state.messages, [user.id]: user, [reply.id]: reply },
    order: [...state.order, ...fresh],
    leaf: reply.id,
    seqs: { ...state.seqs, [ev.turn_id]: state.seqs[ev.turn_id] ?? 0 },
  };
}

/** Apply one streamed event. Duplicates (seq already applied) and unknown turns are ignored. */
export function applyEvent(state: ChatState, ev: TurnEvent): ChatState {
  const message = state.messages[ev.turn_id];
  const last = state.seqs[ev.turn_id];
  if (message === undefined || last === undefined || ev.seq <= last) return state;
  let next: ChatMessage = message;
  if (state.replaying[ev.turn_id]) next = { ...next, content: "" };
  switch (ev.type) {
    case "turn.started":
      next = { ...next, model: ev.model, status: "streaming" };
      break;
    case "turn.delta":
      next = { ...next, content: next.content + ev.text };
      break;
    case "turn.snapshot":
      next = { ...next, content: ev.text };
      break;
    case "turn.finished":
      next = {
        ...next,
        status: ev.status,
        finish_reason: ev.finish_reason,
        error: ev.error ? ev.error.message : null,
      };
      break;
  }
  const { [ev.turn_id]: _done, ...replaying } = state.replaying;
  return {
    ...state,
    messages: { ...state.messages, [ev.turn_id]: next },
    seqs: { ...state.seqs, [ev.turn_id]: ev.seq },
    replaying,
  };
}

/** Where to resume a reply after a reconnect: `turn.subscribe {after_seq}`. */
export function resumePoint(state: ChatState, turnId: string): number {
  return state.seqs[turnId] ?? 0;
}

/** Replies still streaming, with the seq to resume each from. */
export function liveTurns(state: ChatState): { turnId: string; afterSeq: number }[] {
  return Object.values(state.messages)
    .filter((m) => m.status === "streaming")
    .map((m) => ({ turnId: m.id, afterSeq: resumePoint(state, m.id) }));
}

/** The branch on screen, root first. */
export function activePath(state: ChatState): ChatMessage[] {
  const path: ChatMessage[] = [];
  const seen = new Set<string>();
  let id = state.leaf;
  while (id !== null && !seen.has(id)) {
    const m: ChatMessage | undefined = state.messages[id];
    if (m === undefined) break;
    seen.add(id);
    path.push(m);
    id = m.parent_id;
  }
  return path.reverse();
}

/** Messages sharing `id`'s parent (itself included), oldest first. */
export function siblings(state: ChatState, id: string): string[] {
  const message = state.messages[id];
  if (message === undefined) return [];
  return state.order.filter((other) => state.messages[other]?.parent_id === message.parent_id);
}

/** "2 / 3": where `id` stands among its siblings (1-based). */
export function branchPosition(state: ChatState, id: string): { index: number; count: number } {
  const all = siblings(state, id);
  return { index: all.indexOf(id) + 1, count: all.length };
}

/** The newest leaf under `id`: switching to a branch shows its latest conversation. */
export function newestLeaf(state: ChatState, id: string): string {
  let current = id;
  for (;;) {
    const children = state.order.filter((o) => state.messages[o]?.parent_id === current);
    const newest = children[children.length - 1];
    if (newest === undefined) return current;
    current = newest;
  }
}

/** Move to the sibling `offset` steps from `id` (-1: previous, +1: next); null at the ends. */
export function switchBranch(state: ChatState, id: string, offset: number): ChatState | null {
  const all = siblings(state, id);
  const target = all[all.indexOf(id) + offset];
  if (target === undefined || all.indexOf(id) < 0) return null;
  return { ...state, leaf: newestLeaf(state, target) };
}
