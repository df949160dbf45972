/** Client-side routes on the History API; the backend answers index.html for these paths. */

export const route = $state({ path: location.pathname, search: location.search });

export function navigate(path: string, options: { replace?: boolean } = {}): void {
  const url = new URL(path, location.origin);
  if (url.pathname + url.search === location.pathname + location.search) return;
  if (options.replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route.path = url.pathname;
  route.search = url.search;
}

window.addEventListener("popstate", () => {
  route.path = location.pathname;
  route.search = location.search;
});

/** `/c/abc` → "abc" for the pattern `/c/:id`; null when the path does not match. */
export function param(path: string, prefix: string): string | null {
  if (!path.startsWith(prefix)) return null;
  const rest = decodeURIComponent(path.slice(prefix.length)).replace(/\/$/, "");
  return rest && !rest.includes("/") ? rest : null;
}
