/** Light / dark / system theme, remembered per browser (index.html applies it before paint). */

export type Theme = "light" | "dark" | "system";

const stored = localStorage.getItem("theme");
export const theme = $state<{ value: Theme }>({
  value: stored === "light" || stored === "dark" ? stored : "system",
});

export function setTheme(value: Theme): void {
  theme.value = value;
  if (value === "system") {
    localStorage.removeItem("theme");
    delete document.documentElement.dataset.theme;
  } else {
    localStorage.setItem("theme", value);
    document.documentElement.dataset.theme = value;
  }
}
