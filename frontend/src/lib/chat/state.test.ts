import { describe, expect, it } from "vitest";
import type { TurnAccepted, TurnEvent } from "../ws/events";
import {
  acceptTurn,
  activePath,
  applyEvent,
  branchPosition,
  type ChatMessage,
  type ChatState,
  emptyChat,
  liveTurns,
  loadChat,
  resumePoint,
  switchBranch,
} from "./state";

function accepted(turn: string, user: string, chat = "c1"): TurnAccepted {
  return {
    type: "turn.accepted",
    ref: null,
    turn_id: turn,
    chat_id: chat,
    user_message_id: user,
    assistant_message_id: turn,
    created_chat: false,
    existing: false,
  };
}

const delta = (turn: string, seq: number, text: string): TurnEvent => ({
  type: "turn.delta",
  turn_id: turn,
  seq,
  text,
});

const started = (turn: string): TurnEvent => ({
  type: "turn.started",
  turn_id: turn,
  seq: 1,
  model: "fake",
  prompt_tokens: 3,
});

const finished = (turn: string, seq: number, status: "complete" | "cancelled" = "complete"): TurnEvent => ({
  type: "turn.finished",
  turn_id: turn,
  seq,
  status,
  finish_reason: status === "complete" ? "eos" : "aborted",
  usage: { prompt_tokens: 3, completion_tokens: 2 },
  timings: { queue_ms: 1, ttft_ms: 2, total_ms: 3 },
  error: null,
});

function msg(id: string, parent: string | null, role: string, content: string, status = "complete"): ChatMessage {
  return {
    id,
    parent_id: parent,
    role,
    content,
    status: status as ChatMessage["status"],
    model: null,
    finish_reason: null,
    error: null,
  };
}

function applyAll(state: ChatState, events: TurnEvent[]): ChatState {
  return events.reduce(applyEvent, state);
}

function sent(state: ChatState): ChatState {
  return acceptTurn(state, accepted("a1", "u1"), { content: "hi", parentId: null, model: null });
}

describe("deltas", () => {
  it("appends text in seq order and records the outcome", () => {
    let s = sent(emptyChat);
    s = applyAll(s, [started("a1"), delta("a1", 2, "Hello"), delta("a1", 3, " world"), finished("a1", 4)]);
    const reply = s.messages.a1!;
    expect(reply.content).toBe("Hello world");
    expect(reply.status).toBe("complete");
    expect(reply.model).toBe("fake");
    expect(activePath(s).map((m) => m.id)).toEqual(["u1", "a1"]);
  });

  it("ignores an event whose seq was already applied", () => {
    let s = sent(emptyChat);
    s = applyAll(s, [started("a1"), delta("a1", 2, "Hello")]);
    const again = applyEvent(s, delta("a1", 2, "Hello"));
    expect(again).toBe(s);
    expect(again.messages.a1!.content).toBe("Hello");
  });

  it("ignores events of a turn it does not follow", () => {
    const s = sent(emptyChat);
    expect(applyEvent(s, delta("other", 2, "x"))).toBe(s);
  });

  it("keeps the error message of a failed reply", () => {
    let s = sent(emptyChat);
    s = applyEvent(s, {
      ...(finished("a1", 1) as Extract<TurnEvent, { type: "turn.finished" }>),
      status: "error",
      finish_reason: "error",
      error: { code: "runner_unavailable", message: "The model runner cannot be reached." },
    });
    expect(s.messages.a1!.status).toBe("error");
    expect(s.messages.a1!.error).toBe("The model runner cannot be reached.");
  });
});

describe("resume", () => {
  it("resumes after the last applied seq without duplicating a word", () => {
    let s = sent(emptyChat);
    s = applyAll(s, [started("a1"), delta("a1", 2, "one"), delta("a1", 3, " two")]);
    expect(resumePoint(s, "a1")).toBe(3);
    // The server replays from after_seq, but a coalesced batch may overlap what we have.
    s = applyAll(s, [delta("a1", 3, " two"), delta("a1", 4, " three"), finished("a1", 5)]);
    expect(s.messages.a1!.content).toBe("one two three");
  });

  it("rebuilds a reply that was mid-stream when the page loaded", () => {
    let s = loadChat({
      id: "c1",
      current_message_id: "a1",
      messages: [msg("u1", null, "user", "hi"), msg("a1", "u1", "assistant", "one tw", "streaming")],
    });
    expect(liveTurns(s)).toEqual([{ turnId: "a1", afterSeq: 0 }]);
    // Stored text may be a checkpoint; the replay from seq 0 replaces it, never appends to it.
    s = applyAll(s, [started("a1"), delta("a1", 2, "one"), delta("a1", 3, " two")]);
    expect(s.messages.a1!.content).toBe("one two");
    s = applyEvent(s, delta("a1", 4, " three"));
    expect(s.messages.a1!.content).toBe("one two three");
    expect(liveTurns(s)).toEqual([{ turnId: "a1", afterSeq: 4 }]);
  });

  it("replaces its text with a snapshot, then appends what follows", () => {
    let s = loadChat({
      id: "c1",
      current_message_id: "a1",
      messages: [msg("u1", null, "user", "hi"), msg("a1", "u1", "assistant", "one", "streaming")],
    });
    s = applyEvent(s, { type: "turn.snapshot", turn_id: "a1", seq: 7, text: "one two" });
    s = applyAll(s, [delta("a1", 7, " two"), delta("a1", 8, " three"), finished("a1", 9)]);
    expect(s.messages.a1!.content).toBe("one two three");
  });

  it("continues an interrupted reply: new events append to the stored text", () => {
    let s = loadChat({
      id: "c1",
      current_message_id: "a1",
      messages: [msg("u1", null, "user", "hi"), msg("a1", "u1", "assistant", "one two", "interrupted")],
    });
    s = acceptTurn(s, accepted("a1", "u1"), { content: "hi", parentId: null, model: null });
    expect(s.messages.a1!.status).toBe("streaming");
    expect(s.messages.u1!.content).toBe("hi");
    s = applyAll(s, [started("a1"), delta("a1", 12, " three"), finished("a1", 13)]);
    expect(s.messages.a1!.content).toBe("one two three");
    expect(s.order).toEqual(["u1", "a1"]);
  });

  it("stops following a reply once it finished", () => {
    let s = sent(emptyChat);
    s = applyAll(s, [started("a1"), finished("a1", 2, "cancelled")]);
    expect(liveTurns(s)).toEqual([]);
    expect(s.messages.a1!.status).toBe("cancelled");
  });
});

describe("branches", () => {
  // u1 → a1 (first answer); u1' → a2 (regenerated as a sibling branch); u1'' → a3.
  const tree = loadChat({
    id: "c1",
    current_message_id: "a2",
    messages: [
      msg("u1", null, "user", "hi"),
      msg("a1", "u1", "assistant", "first"),
      msg("u2", null, "user", "hi"),
      msg("a2", "u2", "assistant", "second"),
      msg("u3", null, "user", "hi again"),
      msg("a3", "u3", "assistant", "third"),
    ],
  });

  it("shows the branch of the current message", () => {
    expect(activePath(tree).map((m) => m.id)).toEqual(["u2", "a2"]);
    expect(branchPosition(tree, "u2")).toEqual({ index: 2, count: 3 });
  });

  it("moves to the previous and next sibling and to its newest leaf", () => {
    const prev = switchBranch(tree, "u2", -1)!;
    expect(prev.leaf).toBe("a1");
    expect(activePath(prev).map((m) => m.content)).toEqual(["hi", "first"]);
    const next = switchBranch(tree, "u2", 1)!;
    expect(next.leaf).toBe("a3");
    expect(branchPosition(next, "u3")).toEqual({ index: 3, count: 3 });
  });

  it("refuses to move past either end", () => {
    expect(switchBranch(tree, "u1", -1)).toBeNull();
    expect(switchBranch(tree, "u3", 1)).toBeNull();
  });

  it("adds a regenerated turn as a new sibling and shows it", () => {
    let s = acceptTurn(tree, accepted("a4", "u4"), { content: "hi", parentId: null, model: "fake" });
    s = applyAll(s, [started("a4"), delta("a4", 2, "fourth"), finished("a4", 3)]);
    expect(activePath(s).map((m) => m.id)).toEqual(["u4", "a4"]);
    expect(branchPosition(s, "u4")).toEqual({ index: 4, count: 4 });
    // Switching away and back keeps the streamed text.
    const back = switchBranch(switchBranch(s, "u4", -1)!, "u3", 1)!;
    expect(back.messages.a4!.content).toBe("fourth");
    expect(back.leaf).toBe("a4");
  });

  it("keeps streaming into a reply that is not on screen", () => {
    let s = acceptTurn(tree, accepted("a4", "u4"), { content: "hi", parentId: null, model: null });
    s = switchBranch(s, "u4", -3)!;
    s = applyAll(s, [started("a4"), delta("a4", 2, "later")]);
    expect(s.leaf).toBe("a1");
    expect(s.messages.a4!.content).toBe("later");
  });
});
