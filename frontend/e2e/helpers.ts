import { type Page, expect } from "@playwright/test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

export const ADMIN = { name: "Ada Admin", email: "ada@example.com", password: "correct horse battery" };
export const MEMBER = { name: "Bob User", email: "bob@example.com", password: "another long secret" };

/** Record every WebSocket the page opens so a test can cut one, as a network loss would. */
export async function trackSockets(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    const sockets: WebSocket[] = [];
    (window as unknown as { __sockets: WebSocket[] }).__sockets = sockets;
    window.WebSocket = class extends Native {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        sockets.push(this);
      }
    } as typeof WebSocket;
  });
}

export async function dropSocket(page: Page): Promise<void> {
  await page.evaluate(() => {
    const sockets = (window as unknown as { __sockets: WebSocket[] }).__sockets;
    sockets[sockets.length - 1]?.close();
  });
}

export async function send(page: Page, text: string): Promise<void> {
  const box = page.getByRole("textbox", { name: "Message" });
  await box.fill(text);
  await box.press("Enter");
}

export const replies = (page: Page) => page.locator("li.message.assistant");
export const lastReply = (page: Page) => replies(page).last();

export async function waitForReplyDone(page: Page): Promise<void> {
  await expect(lastReply(page)).not.toHaveAttribute("data-status", "streaming", { timeout: 30_000 });
}

export async function screenshot(page: Page, name: string): Promise<void> {
  const dir = process.env.E2E_SCREENSHOTS_DIR;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`) });
}

export async function accountsEnabled(page: Page): Promise<boolean> {
  const response = await page.request.get("/api/auth/config");
  return response.status() !== 404;
}

/** Whether the backend knows a client frame type (it answers `invalid_frame` for unknown ones). */
export async function socketAccepts(page: Page, frame: Record<string, unknown>): Promise<boolean> {
  const code = await page.evaluate(async (payload) => {
    const ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/api/ws`);
    return await new Promise<string>((resolve) => {
      ws.onopen = () => ws.send(JSON.stringify({ ...payload, ref: "probe" }));
      ws.onmessage = (m) => {
        const event = JSON.parse(m.data as string) as { ref?: string; error?: { code: string } };
        if (event.ref !== "probe") return;
        ws.close();
        resolve(event.error?.code ?? "ok");
      };
      ws.onclose = () => resolve("closed");
    });
  }, frame);
  return code !== "invalid_frame" && code !== "closed";
}
