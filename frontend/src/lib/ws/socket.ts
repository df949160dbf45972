/**
 * One WebSocket to `/api/ws` for the whole app, reconnecting with backoff.
 *
 * The socket carries no state of its own: after every (re)connect it calls `onOpen`, and the
 * chat screen re-subscribes to the replies it follows from the last `seq` it applied.
 */

import type { ClientFrame, ServerEvent } from "./events";

export type SocketStatus = "connecting" | "open" | "reconnecting" | "closed";

/** Close code the server uses for a socket without a valid session. */
export const CLOSE_UNAUTHORIZED = 4401;

export interface SocketHandlers {
  onEvent: (event: ServerEvent) => void;
  onStatus: (status: SocketStatus) => void;
  onOpen: () => void;
  onUnauthorized: () => void;
}

const PING_EVERY_MS = 25_000;
const MAX_BACKOFF_MS = 5_000;

export class ChatSocket {
  private ws: WebSocket | null = null;
  private attempts = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;
  private refCounter = 0;

  constructor(
    private readonly url: string,
    private readonly handlers: SocketHandlers,
  ) {}

  static forPage(handlers: SocketHandlers): ChatSocket {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    return new ChatSocket(`${scheme}${location.host}/api/ws`, handlers);
  }

  start(): void {
    this.stopped = false;
    window.addEventListener("online", this.reconnectNow);
    this.open();
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener("online", this.reconnectNow);
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.ws?.close(1000);
    this.ws = null;
    this.handlers.onStatus("closed");
  }

  get isOpen(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  nextRef(): string {
    this.refCounter += 1;
    return `r${Date.now().toString(36)}-${this.refCounter}`;
  }

  /** Sends a frame; false when the socket is not open (the caller tells the user). */
  send(frame: ClientFrame): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Drops the connection and reconnects (tests simulate a network loss with this too). */
  readonly reconnectNow = (): void => {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return;
    this.attempts = 0;
    this.open();
  };

  private open(): void {
    this.handlers.onStatus(this.attempts === 0 ? "connecting" : "reconnecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.attempts = 0;
      this.handlers.onStatus("open");
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_EVERY_MS);
      this.handlers.onOpen();
    };
    ws.onmessage = (message: MessageEvent<string>) => {
      let event: ServerEvent;
      try {
        event = JSON.parse(message.data) as ServerEvent;
      } catch {
        return;
      }
      this.handlers.onEvent(event);
    };
    ws.onclose = (close) => {
      if (this.ws !== ws) return;
      clearInterval(this.pingTimer);
      this.ws = null;
      if (close.code === CLOSE_UNAUTHORIZED) {
        this.stopped = true;
        this.handlers.onStatus("closed");
        this.handlers.onUnauthorized();
        return;
      }
      if (this.stopped) return;
      this.handlers.onStatus("reconnecting");
      const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.attempts) * (0.75 + Math.random() / 2);
      this.attempts += 1;
      this.retryTimer = setTimeout(() => this.open(), delay);
    };
  }
}
