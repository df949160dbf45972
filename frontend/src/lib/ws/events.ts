/**
 * WebSocket frames and events, written by hand from docs/websocket.md.
 *
 * `EVENT_FIELDS` / `FRAME_FIELDS` list every field of every type; the compiler checks that the
 * lists and the types agree, and events.test.ts checks the lists against the JSON schema dumped
 * from the backend's pydantic models (src/lib/api/events.schema.json), so the three move together.
 */

export interface ErrorBody {
  code: string;
  message: string;
  details?: { field: string; reason: string }[];
}

export interface Usage {
  prompt_tokens: number | null;
  completion_tokens: number | null;
}

export interface Timings {
  queue_ms: number | null;
  ttft_ms: number | null;
  total_ms: number | null;
}

export type TurnStatus = "complete" | "interrupted" | "cancelled" | "error";

export interface TurnAccepted {
  type: "turn.accepted";
  ref: string | null;
  turn_id: string;
  chat_id: string;
  user_message_id: string;
  assistant_message_id: string;
  created_chat: boolean;
  /** True when a repeated `turn_key` found the turn an earlier send started. */
  existing: boolean;
}

export interface TurnStarted {
  type: "turn.started";
  turn_id: string;
  seq: number;
  model: string;
  prompt_tokens: number;
}

export interface TurnDelta {
  type: "turn.delta";
  turn_id: string;
  seq: number;
  text: string;
}

export interface TurnFinished {
  type: "turn.finished";
  turn_id: string;
  seq: number;
  status: TurnStatus;
  finish_reason: string | null;
  usage: Usage;
  timings: Timings;
  error: ErrorBody | null;
}

/** The whole text through `seq`; it replaces what the client holds (a resume from storage). */
export interface TurnSnapshot {
  type: "turn.snapshot";
  turn_id: string;
  seq: number;
  text: string;
}

/** The answer to `turn.stop`; `stopped` false = the reply had already ended. */
export interface TurnStopAnswer {
  type: "turn.stop";
  ref: string | null;
  turn_id: string;
  stopped: boolean;
}

export interface ErrorEvent {
  type: "error";
  ref: string | null;
  error: ErrorBody;
  /** Set when a `turn.subscribe` failed: which turn it was about. */
  turn_id?: string;
}

export interface PongEvent {
  type: "pong";
  ref: string | null;
}

export type TurnEvent = TurnStarted | TurnDelta | TurnFinished | TurnSnapshot;
export type ServerEvent = TurnAccepted | TurnEvent | TurnStopAnswer | ErrorEvent | PongEvent;

export interface GenerationParams {
  temperature?: number | null;
  top_p?: number | null;
  max_tokens?: number | null;
  stop?: string[];
  seed?: number | null;
}

export interface ChatSendFrame {
  type: "chat.send";
  ref?: string | null;
  chat_id?: string | null;
  /** Omitted: the chat's active leaf; null: a new root branch; an id: answer under it. */
  parent_id?: string | null;
  content: string;
  model?: string;
  params?: GenerationParams;
  /** Idempotency key: the same key again answers with the turn it started, never a second. */
  turn_key?: string | null;
  /** With a repeated `turn_key`: replay that turn's events after this seq. */
  after_seq?: number;
}

export interface TurnSubscribeFrame {
  type: "turn.subscribe";
  ref?: string | null;
  turn_id: string;
  after_seq?: number;
}

export interface PingFrame {
  type: "ping";
  ref?: string | null;
}

export interface TurnStopFrame {
  type: "turn.stop";
  ref?: string | null;
  turn_id: string;
}

/** More text into an interrupted, cancelled or length-limited reply (same turn id). */
export interface TurnContinueFrame {
  type: "turn.continue";
  ref?: string | null;
  turn_id: string;
  model?: string;
  params?: GenerationParams;
  turn_key?: string | null;
}

/** A new reply as a sibling of `turn_id`, under the same user message. */
export interface TurnRegenerateFrame {
  type: "turn.regenerate";
  ref?: string | null;
  turn_id: string;
  model?: string;
  params?: GenerationParams;
  turn_key?: string | null;
}

export type ClientFrame =
  | ChatSendFrame
  | TurnSubscribeFrame
  | TurnStopFrame
  | TurnContinueFrame
  | TurnRegenerateFrame
  | PingFrame;

// Compile-time: `L` names exactly the keys of `T`, no more, no fewer.
type Exactly<T, L extends readonly string[]> = [Exclude<keyof T, L[number]>] extends [never]
  ? [Exclude<L[number], keyof T>] extends [never]
    ? L
    : never
  : never;

function fields<T>() {
  return <const L extends readonly string[]>(list: Exactly<T, L>): readonly string[] => list;
}

/** Backend pydantic model name → the fields this module gives it. */
export const EVENT_FIELDS: Record<string, readonly string[]> = {
  TurnAccepted: fields<TurnAccepted>()([
    "type",
    "ref",
    "turn_id",
    "chat_id",
    "user_message_id",
    "assistant_message_id",
    "created_chat",
    "existing",
  ]),
  TurnStartedEvent: fields<TurnStarted>()(["type", "turn_id", "seq", "model", "prompt_tokens"]),
  TurnDeltaEvent: fields<TurnDelta>()(["type", "turn_id", "seq", "text"]),
  TurnFinishedEvent: fields<TurnFinished>()([
    "type",
    "turn_id",
    "seq",
    "status",
    "finish_reason",
    "usage",
    "timings",
    "error",
  ]),
  Usage: fields<Usage>()(["prompt_tokens", "completion_tokens"]),
  Timings: fields<Timings>()(["queue_ms", "ttft_ms", "total_ms"]),
  TurnSnapshotEvent: fields<TurnSnapshot>()(["type", "turn_id", "seq", "text"]),
  PongEvent: fields<PongEvent>()(["type", "ref"]),
};

export const FRAME_FIELDS: Record<string, readonly string[]> = {
  ChatSendFrame: fields<ChatSendFrame>()([
    "type",
    "ref",
    "chat_id",
    "parent_id",
    "content",
    "model",
    "params",
    "turn_key",
    "after_seq",
  ]),
  TurnStopFrame: fields<TurnStopFrame>()(["type", "ref", "turn_id"]),
  TurnContinueFrame: fields<TurnContinueFrame>()([
    "type",
    "ref",
    "turn_id",
    "model",
    "params",
    "turn_key",
  ]),
  TurnRegenerateFrame: fields<TurnRegenerateFrame>()([
    "type",
    "ref",
    "turn_id",
    "model",
    "params",
    "turn_key",
  ]),
  TurnSubscribeFrame: fields<TurnSubscribeFrame>()(["type", "ref", "turn_id", "after_seq"]),
  PingFrame: fields<PingFrame>()(["type", "ref"]),
  GenerationParams: fields<GenerationParams>()(["temperature", "top_p", "max_tokens", "stop", "seed"]),
};
