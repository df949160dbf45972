/** Who is signed in, and the server's account settings. */

import { api, ApiError } from "./api/client";
import type { AuthConfig, LoginResult, Me } from "./api/types";

interface Session {
  ready: boolean;
  me: Me | null;
  config: AuthConfig | null;
  error: string | null;
}

export const session = $state<Session>({
  ready: false,
  me: null,
  config: null,
  error: null,
});

export async function loadSession(): Promise<void> {
  session.error = null;
  try {
    session.config = await api.get<AuthConfig>("/api/auth/config", { quiet401: true });
  } catch (error) {
    session.error = error instanceof Error ? error.message : String(error);
    session.ready = true;
    return;
  }
  await refreshMe();
  session.ready = true;
}

export async function refreshMe(): Promise<void> {
  try {
    session.me = await api.get<Me>("/api/auth/me", { quiet401: true });
  } catch (error) {
    if (error instanceof ApiError && error.status === 403 && error.code === "account_pending") {
      session.me = session.me ? { ...session.me, role: "pending" } : pendingPlaceholder();
    } else if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      session.me = null;
    } else {
      throw error;
    }
  }
}

function pendingPlaceholder(): Me {
  return { id: "", email: "", name: "", role: "pending", created_at: new Date().toISOString() };
}

export async function login(email: string, password: string): Promise<void> {
  let result: LoginResult;
  try {
    result = await api.post<LoginResult>("/api/auth/login", { email, password });
  } catch (error) {
    // A pending account may be refused a session: it still gets the waiting screen.
    if (error instanceof ApiError && error.code === "account_pending") {
      session.me = { ...pendingPlaceholder(), email };
      return;
    }
    throw error;
  }
  session.me = result.user;
  session.config = session.config ? { ...session.config, has_users: true } : session.config;
}

export async function register(name: string, email: string, password: string): Promise<void> {
  await api.post("/api/auth/register", { name, email, password });
  await login(email, password);
}

export async function logout(): Promise<void> {
  try {
    await api.post("/api/auth/logout");
  } finally {
    session.me = null;
  }
}
