import { describe, expect, it } from "vitest";
import { ago, auditFilter, eventFormProblem, parseList, syncIndicator } from "./logic";

const now = 1_800_000_000_000;
const base = { connected: true, pending_changes: 0, last_sync_ms: now - 5_000, last_error: null, last_error_ms: null };

describe("syncIndicator", () => {
  it("is green when online with nothing waiting", () => {
    const i = syncIndicator(base, now);
    expect(i.tone).toBe("ok");
    expect(i.label).toBe("Online");
    expect(i.detail).toBe("nothing waiting · last sync 5 s ago");
  });

  it("shows changes waiting while syncing, and offline when disconnected", () => {
    expect(syncIndicator({ ...base, pending_changes: 3 }, now)).toMatchObject({ tone: "syncing", detail: "3 changes waiting · last sync 5 s ago" });
    expect(syncIndicator({ ...base, connected: false, pending_changes: 1 }, now)).toMatchObject({ tone: "offline", label: "Offline", detail: "1 change waiting · last sync 5 s ago" });
    expect(syncIndicator({ ...base, connected: false, last_sync_ms: null }, now).detail).toContain("never synced");
  });

  it("turns red when the last failure is newer than the last success", () => {
    const failing = { ...base, connected: false, last_error: "connection refused", last_error_ms: now - 1_000 };
    expect(syncIndicator(failing, now)).toMatchObject({ tone: "error", label: "Offline: sync failing" });
    expect(syncIndicator(failing, now).detail).toContain("connection refused");
    // An older failure, followed by a success, is history: not red.
    const recovered = { ...failing, last_error_ms: now - 60_000 };
    expect(syncIndicator(recovered, now).tone).toBe("offline");
    // Connected again after the failure (before anything needed syncing): not red.
    expect(syncIndicator({ ...failing, connected: true, last_sync_ms: null }, now).tone).toBe("ok");
    // Failing before ever syncing is red too.
    expect(syncIndicator({ ...failing, last_sync_ms: null }, now).tone).toBe("error");
  });

  it("is neutral while nobody is signed in (sync waits, it did not fail)", () => {
    const waiting = { ...base, connected: false, last_error: "not signed in", last_error_ms: now };
    expect(syncIndicator(waiting, now, false)).toMatchObject({ tone: "offline", label: "Not signed in" });
  });
});

describe("ago", () => {
  it("uses the largest sensible unit", () => {
    expect(ago(now - 59_000, now)).toBe("59 s ago");
    expect(ago(now - 5 * 60_000, now)).toBe("5 min ago");
    expect(ago(now - 3 * 3_600_000, now)).toBe("3 h ago");
    expect(ago(now - 3 * 86_400_000, now)).toBe("3 d ago");
    expect(ago(now + 10_000, now)).toBe("0 s ago");
  });
});

describe("parseList", () => {
  it("splits on commas and lines, trims, drops blanks and repeats", () => {
    expect(parseList(" day-1, day-2 ,,day-3\nday-1 ")).toEqual(["day-1", "day-2", "day-3"]);
    expect(parseList("  ")).toEqual([]);
  });
});

describe("auditFilter", () => {
  it("leaves empty fields out and widens a bare date to its start", () => {
    expect(auditFilter({ action: " auth.sign_in ", actor: "", result: "denied", since: "2026-11-21" }, 40, 50)).toEqual({
      after: 40,
      limit: 50,
      action: "auth.sign_in",
      actor: null,
      result: "denied",
      since: "2026-11-21T00:00:00Z",
    });
    expect(auditFilter({ action: "", actor: "", result: "", since: "2026-11-21T10:00:00+01:00" }, 0, 10).since).toBe("2026-11-21T10:00:00+01:00");
  });
});

describe("eventFormProblem", () => {
  it("accepts a complete form and names the first problem otherwise", () => {
    expect(eventFormProblem("fest-2026", "Summer fest", "15")).toBeNull();
    expect(eventFormProblem("", "x", "15")).toContain("needs an id");
    expect(eventFormProblem("a b", "x", "15")).toContain("letters, digits");
    expect(eventFormProblem("a", " ", "15")).toContain("needs a name");
    expect(eventFormProblem("a", "x", "0")).toContain("1 to 1440");
    expect(eventFormProblem("a", "x", "2.5")).toContain("1 to 1440");
  });
});
