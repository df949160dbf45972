/**
 * The open conversation: its message tree (a pure reducer, chat/state.ts), the socket that
 * streams into it, and the actions of the chat screen.
 */

import { api, describe } from "./api/client";
import type { ChatDetail } from "./api/types";
import {
  acceptTurn,
  applyEvent,
  type ChatDetailLike,
  type ChatState,
  emptyChat,
  liveTurns,
  loadChat,
  switchBranch as switchBranchIn,
} from "./chat/state";
import { touchChat } from "./chats.svelte";
import { models } from "./models.svelte";
import { navigate } from "./router.svelte";
import type { ClientFrame, ServerEvent } from "./ws/events";
import { ChatSocket, type SocketStatus } from "./ws/socket";

interface Conversation {
  chat: ChatState;
  title: string;
  loading: boolean;
  /** A frame sent and not yet accepted: the composer waits. */
  sending: boolean;
  socket: SocketStatus;
  error: string | null;
}

export const convo = $state<Conversation>({
  chat: emptyChat,
  title: "",
  loading: false,
  sending: false,
  socket: "connecting",
  error: null,
});

interface PendingSend {
  content: string;
  parentId: string | null;
  model: string | null;
  /** The frame as sent: re-sent after a reconnect with the same `turn_key`, which the server
   * answers with the turn it already started (never a second one). */
  frame: ClientFrame;
}

const pending = new Map<string, PendingSend>();
let socket: ChatSocket | null = null;
let onUnauthorized: () => void = () => {};

export function startSocket(unauthorized: () => void): void {
  onUnauthorized = unauthorized;
  socket?.stop();
  socket = ChatSocket.forPage({
    onEvent: handleEvent,
    onStatus: (status) => (convo.socket = status),
    onOpen: resubscribe,
    onUnauthorized: () => onUnauthorized(),
  });
  socket.start();
}

export function stopSocket(): void {
  socket?.stop();
  socket = null;
}

function send(frame: ClientFrame): boolean {
  if (socket?.send(frame)) return true;
  convo.error = "Not connected to the server. Reconnecting…";
  return false;
}

function resubscribe(): void {
  for (const { turnId, afterSeq } of liveTurns(convo.chat)) {
    send({ type: "turn.subscribe", turn_id: turnId, after_seq: afterSeq });
  }
  // Frames in flight when the socket dropped: their turn keys make sending again safe.
  for (const entry of pending.values()) send(entry.frame);
}

function handleEvent(event: ServerEvent): void {
  switch (event.type) {
    case "turn.accepted": {
      const sent = event.ref === null ? undefined : pending.get(event.ref);
      if (sent === undefined || event.ref === null) return;
      pending.delete(event.ref);
      convo.sending = pending.size > 0;
      if (convo.chat.chatId !== null && convo.chat.chatId !== event.chat_id) return;
      convo.chat = acceptTurn(convo.chat, event, sent);
      const now = new Date().toISOString();
      if (event.created_chat) {
        convo.title = titleFrom(sent.content);
        navigate(`/c/${event.chat_id}`, { replace: false });
        touchChat({ id: event.chat_id, title: convo.title, created_at: now, updated_at: now });
      } else {
        touchChat({ id: event.chat_id, title: convo.title, created_at: now, updated_at: now });
      }
      return;
    }
    case "turn.started":
    case "turn.delta":
    case "turn.snapshot":
    case "turn.finished":
      convo.chat = applyEvent(convo.chat, event);
      return;
    case "turn.stop":
      return;
    case "error": {
      if (event.ref !== null && pending.delete(event.ref)) convo.sending = pending.size > 0;
      if (event.turn_id !== undefined) {
        // The reply ended while we were away (or is unknown): storage has the final text.
        void reloadChat();
        return;
      }
      convo.error = event.error.message;
      return;
    }
    case "pong":
      return;
  }
}

function titleFrom(content: string): string {
  const line = content.trim().split("\n")[0] ?? "";
  return line.length > 60 ? `${line.slice(0, 57)}…` : line || "New chat";
}

export function newChat(): void {
  convo.chat = emptyChat;
  convo.title = "";
  convo.error = null;
  navigate("/");
}

export async function openChat(id: string): Promise<void> {
  if (convo.chat.chatId === id && !convo.loading) return;
  convo.loading = true;
  convo.error = null;
  try {
    const detail = await api.get<ChatDetail>(`/api/chats/${encodeURIComponent(id)}`);
    convo.chat = loadChat(detail as unknown as ChatDetailLike);
    convo.title = detail.title;
    resubscribe();
  } catch (error) {
    convo.chat = emptyChat;
    convo.error = describe(error);
  } finally {
    convo.loading = false;
  }
}

async function reloadChat(): Promise<void> {
  const id = convo.chat.chatId;
  if (id === null) return;
  try {
    const detail = await api.get<ChatDetail>(`/api/chats/${encodeURIComponent(id)}`);
    if (convo.chat.chatId !== id) return;
    const leaf = convo.chat.leaf;
    const fresh = loadChat(detail as unknown as ChatDetailLike);
    convo.chat = leaf !== null && leaf in fresh.messages ? { ...fresh, leaf } : fresh;
    resubscribe();
  } catch (error) {
    convo.error = describe(error);
  }
}

function startTurn(content: string, parentId: string | null | undefined): boolean {
  const ref = socket?.nextRef() ?? "r";
  const model = models.selected || null;
  const frame: ClientFrame = {
    type: "chat.send",
    ref,
    turn_key: ref,
    chat_id: convo.chat.chatId,
    content,
    ...(model ? { model } : {}),
    ...(parentId === undefined ? {} : { parent_id: parentId }),
  };
  return dispatch(ref, frame, { content, parentId: parentId ?? null, model, frame });
}

function dispatch(ref: string, frame: ClientFrame, entry: PendingSend): boolean {
  pending.set(ref, entry);
  if (!send(frame)) {
    pending.delete(ref);
    return false;
  }
  convo.sending = true;
  convo.error = null;
  return true;
}

/** Send a message at the end of the branch on screen. */
export function sendMessage(content: string): boolean {
  const leaf = convo.chat.leaf;
  return startTurn(content, convo.chat.chatId === null ? undefined : leaf);
}

/** Edit a sent message: the new text starts a sibling branch beside the old one. */
export function editMessage(userMessageId: string, content: string): boolean {
  const original = convo.chat.messages[userMessageId];
  if (original === undefined) return false;
  return startTurn(content, original.parent_id);
}

/** A new answer to the same question: a sibling of the reply, under the same user message. */
export function regenerate(assistantMessageId: string): boolean {
  const reply = convo.chat.messages[assistantMessageId];
  const question = reply?.parent_id ? convo.chat.messages[reply.parent_id] : undefined;
  if (question === undefined) return false;
  const ref = socket?.nextRef() ?? "r";
  const model = models.selected || null;
  const frame: ClientFrame = {
    type: "turn.regenerate",
    ref,
    turn_key: ref,
    turn_id: assistantMessageId,
    ...(model ? { model } : {}),
  };
  return dispatch(ref, frame, { content: question.content, parentId: question.parent_id, model, frame });
}

/** Generate more text into an interrupted or stopped reply (same message, seq continues). */
export function continueReply(assistantMessageId: string): boolean {
  const reply = convo.chat.messages[assistantMessageId];
  const question = reply?.parent_id ? convo.chat.messages[reply.parent_id] : undefined;
  if (reply === undefined || question === undefined) return false;
  const ref = socket?.nextRef() ?? "r";
  const frame: ClientFrame = { type: "turn.continue", ref, turn_key: ref, turn_id: assistantMessageId };
  return dispatch(ref, frame, {
    content: question.content,
    parentId: question.parent_id,
    model: reply.model,
    frame,
  });
}

export function stop(turnId: string): void {
  send({ type: "turn.stop", turn_id: turnId });
}

/** `< 2 / 3 >`: show the previous or next sibling branch and remember it on the server. */
export async function switchBranch(messageId: string, offset: number): Promise<void> {
  const next = switchBranchIn(convo.chat, messageId, offset);
  if (next === null || next.chatId === null) return;
  convo.chat = next;
  try {
    await api.patch(`/api/chats/${encodeURIComponent(next.chatId)}`, {
      current_message_id: next.leaf,
    });
  } catch (error) {
    convo.error = `The branch is shown but could not be saved: ${describe(error)}`;
  }
}

export function clearError(): void {
  convo.error = null;
}
