// uPlot formats numbers with `new Intl.NumberFormat(navigator.language)` as
// its module loads; a desktop started under the C locale (LANG=C: a kiosk
// box, a service account, the CI's Xvfb) reports the language "C", which
// Intl refuses, and the whole app would fail to start. Imported before
// uPlot: where the reported language is not one Intl accepts, the page
// reports "en-US" instead.

function usable(tag: string): boolean {
  try {
    new Intl.NumberFormat(tag);
    return true;
  } catch {
    return false;
  }
}

if (typeof navigator !== "undefined" && !usable(navigator.language)) {
  Object.defineProperty(navigator, "language", { value: "en-US", configurable: true });
}

export {};
