/**
 * REST types, all from the generated schema.d.ts (`make frontend-types` regenerates it from the
 * backend's OpenAPI document; `make frontend-types-check` fails when it is stale).
 */

import type { components } from "./schema";

type Schemas = components["schemas"];

export type ChatSummaryOut = Schemas["ChatSummary"];
export type ChatDetail = Schemas["ChatDetailOut"];
export type MessageRow = Schemas["MessageOut"];
export type ChatPage = Schemas["ChatPageOut"];
export type SearchResult = Schemas["SearchOut"];
export type Me = Schemas["UserOut"];
export type Role = Me["role"];
export type AuthConfig = Schemas["AuthConfigOut"];
export type LoginResult = Schemas["LoginOut"];
export type ModelInfo = Schemas["ModelOut"];
export type ModelList = Schemas["UserModelList"];
export type Share = Schemas["ShareOut"];
export type SharedChat = Schemas["SharedChatOut"];
export type AdminUser = Schemas["AdminUserOut"];
export type AdminUserList = Schemas["AdminUserList"];
export type AdminModel = Schemas["AdminModelOut"];
export type AdminModelList = Schemas["AdminModelList"];
export type Runner = Schemas["RunnerOut"];
export type RunnerList = Schemas["RunnerList"];
export type UsageReport = Schemas["UsageOut"];
export type UsageRow = Schemas["UsageRowOut"];
export type SettingsOut = Schemas["SettingsOut"];

/** What the sidebar needs of a chat; a chat the screen just started has no flags yet. */
export type ChatListItem = Pick<ChatSummaryOut, "id" | "title" | "created_at" | "updated_at"> &
  Partial<Pick<ChatSummaryOut, "pinned" | "archived" | "tags">>;
