import { type Browser, type BrowserContext, type Page, expect, test } from "@playwright/test";
import {
  ADMIN,
  MEMBER,
  accountsEnabled,
  dropSocket,
  lastReply,
  replies,
  screenshot,
  send,
  socketAccepts,
  trackSockets,
  waitForReplyDone,
} from "./helpers";

// One backend for the whole file: the first test creates the admin, later ones build on it.
test.describe.configure({ mode: "serial" });

let context: BrowserContext;
let page: Page;
let withAccounts = true;

async function openApp(browser: Browser): Promise<Page> {
  context = await browser.newContext();
  const p = await context.newPage();
  await trackSockets(p);
  return p;
}

test.beforeAll(async ({ browser }) => {
  page = await openApp(browser);
});

test.afterAll(async () => {
  await context.close();
});

test("the first visitor registers and becomes the admin", async () => {
  await page.goto("/");
  withAccounts = await accountsEnabled(page);
  test.skip(!withAccounts, "the backend has no /api/auth endpoints yet (single-user mode)");
  await expect(page.getByRole("heading", { name: "Create the admin account" })).toBeVisible();
  await screenshot(page, "register");
  await page.getByLabel("Name").fill(ADMIN.name);
  await page.getByLabel("Email").fill(ADMIN.email);
  await page.getByLabel("Password").fill(ADMIN.password);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("textbox", { name: "Message" })).toBeVisible();
  await expect(page.getByRole("button", { name: "Admin" })).toBeVisible();
});

test("a message streams into the chat, token by token", async () => {
  await page.goto("/");
  await expect(page.getByRole("button", { name: "New chat" })).toBeVisible();
  await send(page, "/tps 20 /long 40");
  const reply = lastReply(page);
  await expect(reply).toHaveAttribute("data-status", "streaming");
  // Watch the text grow while the reply is still streaming.
  await expect(reply.locator(".markdown")).toContainText(/\w+ \w+/);
  const early = (await reply.locator(".markdown").innerText()).length;
  await expect
    .poll(async () => (await reply.locator(".markdown").innerText()).length)
    .toBeGreaterThan(early);
  await expect(page.getByRole("button", { name: "Stop" })).toBeVisible();
  await waitForReplyDone(page);
  await expect(reply).toHaveAttribute("data-status", "complete");
  expect((await reply.locator(".markdown").innerText()).split(/\s+/)).toHaveLength(40);
  await expect(page).toHaveURL(/\/c\/[\w-]+$/);
  await expect(page.getByRole("button", { name: "Send" })).toBeVisible();
  await expect(page.getByRole("button", { name: "Regenerate" })).toBeVisible();
});

test("Markdown renders with highlighted code and a copy button; HTML in a reply never runs", async () => {
  const box = page.getByRole("textbox", { name: "Message" });
  const lines = [
    "/echo Here **bold** and code:",
    "```python",
    "def f(): return 1",
    "```",
    '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>',
  ];
  await box.fill("");
  for (const [i, line] of lines.entries()) {
    // Shift+Enter adds a line instead of sending.
    if (i > 0) await box.press("Shift+Enter");
    await box.pressSequentially(line);
  }
  await expect(box).toHaveValue(lines.join("\n"));
  await box.press("Enter");
  await waitForReplyDone(page);
  const reply = lastReply(page);
  await expect(reply.locator("strong")).toHaveText("bold");
  await expect(reply.locator(".code-block .hljs-keyword")).toHaveText(["def", "return"]);
  await expect(reply.getByRole("button", { name: "Copy" }).first()).toBeVisible();
  await expect(reply).toContainText('<img src=x onerror="window.__pwned=1">');
  expect(await reply.locator("img, script").count()).toBe(0);
  expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
  await screenshot(page, "chat-light");
});

test("Stop ends a streaming reply and keeps its text", async () => {
  const supported = await socketAccepts(page, { type: "turn.stop", turn_id: "probe" });
  test.skip(!supported, "the backend does not accept turn.stop yet");
  await send(page, "/tps 5 /long 300");
  const reply = lastReply(page);
  await expect(reply.locator(".markdown")).toContainText(/\w/);
  await page.getByRole("button", { name: "Stop" }).click();
  await expect(reply).toHaveAttribute("data-status", "cancelled");
  await expect(reply).toContainText("Stopped.");
  await expect(page.getByRole("button", { name: "Send" })).toBeVisible();
});

async function storedReply(chatId: string): Promise<string> {
  const response = await page.request.get(`/api/chats/${chatId}`);
  expect(response.ok()).toBeTruthy();
  const chat = (await response.json()) as {
    current_message_id: string;
    messages: { id: string; content: string }[];
  };
  return chat.messages.find((m) => m.id === chat.current_message_id)?.content ?? "";
}

test("a reload mid-reply resumes it without a duplicate word", async () => {
  const before = await replies(page).count();
  await send(page, "/tps 8 /long 40");
  await expect(replies(page)).toHaveCount(before + 1);
  const reply = lastReply(page);
  await expect(reply.locator(".markdown")).toContainText(/\w+ \w+ \w+/);
  await page.reload();
  await expect(lastReply(page)).toHaveAttribute("data-status", "streaming");
  await waitForReplyDone(page);
  const chatId = page.url().split("/c/")[1]!;
  // The stored reply has 40 words; the page shows exactly it (a duplicate would not match).
  const stored = (await storedReply(chatId)).trim();
  expect(stored.split(/\s+/)).toHaveLength(40);
  await expect(lastReply(page).locator(".markdown")).toHaveText(stored);
});

test("a dropped connection mid-reply resumes without a duplicate word", async () => {
  const before = await replies(page).count();
  await send(page, "/tps 8 /long 40");
  await expect(replies(page)).toHaveCount(before + 1);
  const reply = lastReply(page);
  await expect(reply).toHaveAttribute("data-status", "streaming");
  await expect(reply.locator(".markdown")).toContainText(/\w+ \w+/);
  await dropSocket(page);
  await waitForReplyDone(page);
  const chatId = page.url().split("/c/")[1]!;
  // The stored reply has 40 words; the page shows exactly it (a duplicate would not match).
  const stored = (await storedReply(chatId)).trim();
  expect(stored.split(/\s+/)).toHaveLength(40);
  await expect(lastReply(page).locator(".markdown")).toHaveText(stored);
});

test("regenerate makes a sibling branch and the switcher moves between them", async () => {
  await page.getByRole("button", { name: "New chat" }).click();
  await send(page, "/echo first answer");
  await waitForReplyDone(page);
  await expect(lastReply(page)).toContainText("first answer");
  await page.getByRole("button", { name: "Regenerate" }).click();
  await waitForReplyDone(page);
  await expect(page.getByText("2 / 2")).toBeVisible();
  await page.getByRole("button", { name: "Previous branch" }).click();
  await expect(page.getByText("1 / 2")).toBeVisible();
  await expect(replies(page)).toHaveCount(1);
  await page.getByRole("button", { name: "Next branch" }).click();
  await expect(page.getByText("2 / 2")).toBeVisible();
  // The choice is stored (PATCH current_message_id): a reload shows the same branch.
  const chatId = page.url().split("/c/")[1]!;
  const probe = await page.request.patch(`/api/chats/${chatId}`, { data: {} });
  if (probe.status() === 405) {
    test.info().annotations.push({ type: "not landed", description: "PATCH /api/chats/{id}" });
    return;
  }
  await page.getByRole("button", { name: "Previous branch" }).click();
  await expect(page.getByText("1 / 2")).toBeVisible();
  await page.reload();
  await expect(page.getByText("1 / 2")).toBeVisible();
});

test("edit a sent message into a new branch", async () => {
  const user = page.locator("li.message.user").last();
  await user.getByRole("button", { name: "Edit" }).click();
  await page.getByLabel("Edit message").fill("/echo edited question");
  await page.getByRole("button", { name: "Save and submit" }).click();
  await waitForReplyDone(page);
  await expect(lastReply(page)).toContainText("edited question");
  // The edit is a sibling of the original question, with its own reply.
  await expect(page.locator("li.message.user").last()).toContainText("2 / 2");
  await page.getByRole("button", { name: "Previous branch" }).first().click();
  await expect(page.locator("li.message.user").last()).toContainText("/echo first answer");
});

test("phone width and dark theme", async () => {
  await page.getByLabel("Theme").selectOption("dark");
  await screenshot(page, "chat-dark");
  await page.setViewportSize({ width: 390, height: 780 });
  await expect(page.getByRole("button", { name: "Open the sidebar" })).toBeVisible();
  await expect(page.getByRole("textbox", { name: "Message" })).toBeVisible();
  // The sidebar slides away at phone width; wait until it has.
  await expect(page.getByRole("button", { name: "New chat" })).not.toBeInViewport();
  await screenshot(page, "chat-phone");
  await page.getByRole("button", { name: "Open the sidebar" }).click();
  await expect(page.getByRole("button", { name: "New chat" })).toBeInViewport({ ratio: 1 });
  await expect(page.locator("nav.sidebar")).toHaveCSS("transform", "none");
  await screenshot(page, "sidebar-phone");
  await page.getByRole("button", { name: "Close the sidebar" }).first().click();
  await page.getByLabel("Theme").selectOption("light").catch(() => undefined);
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.getByLabel("Theme").selectOption("light");
});

test("an admin approves a user who waits on the pending screen", async ({ browser }) => {
  test.skip(!withAccounts, "the backend has no /api/auth endpoints yet (single-user mode)");
  const other = await browser.newContext();
  const member = await other.newPage();
  try {
    await member.goto("/");
    await member.getByRole("button", { name: "Sign up" }).click();
    await member.getByLabel("Name").fill(MEMBER.name);
    await member.getByLabel("Email").fill(MEMBER.email);
    await member.getByLabel("Password").fill(MEMBER.password);
    await member.getByRole("button", { name: "Create account" }).click();
    await expect(member.getByRole("heading", { name: /waiting for approval/ })).toBeVisible();
    await screenshot(member, "pending");

    await page.getByRole("button", { name: "Admin" }).click();
    await expect(page.getByRole("heading", { name: "Users" })).toBeVisible();
    await page.getByRole("button", { name: `Approve ${MEMBER.email}` }).click();
    await expect(page.getByRole("button", { name: `Approve ${MEMBER.email}` })).toHaveCount(0);
    await screenshot(page, "admin-users");

    // The pending screen looks again on its own and lets the user in.
    await expect(member.getByRole("textbox", { name: "Message" })).toBeVisible({ timeout: 20_000 });
  } finally {
    await other.close();
  }
});
