import { describe, expect, it } from "vitest";
import { ago, arrivalSeries, auditFilter, deviceName, readableRef, duration, eventFormProblem, gap, healthConcerns, listTimeRules, localInputToMs, msToLocalInput, parseList, syncIndicator } from "./logic";

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
    expect(syncIndicator(failing, now)).toMatchObject({ tone: "error", label: "Offline: sync failing", raw: "connection refused" });
    expect(syncIndicator(failing, now).detail).not.toContain("connection refused");
    // An older failure, followed by a success, is history: not red.
    const recovered = { ...failing, last_error_ms: now - 60_000 };
    expect(syncIndicator(recovered, now).tone).toBe("offline");
    // Connected again after the failure (before anything needed syncing): not red.
    expect(syncIndicator({ ...failing, connected: true, last_sync_ms: null }, now).tone).toBe("ok");
    // Failing before ever syncing is red too.
    expect(syncIndicator({ ...failing, last_sync_ms: null }, now).tone).toBe("error");
  });

  it("says the failure in plain words with the next try, the raw error aside", () => {
    const failing = {
      ...base,
      connected: false,
      last_error: "connect: IO error: Connection refused (os error 111)",
      last_error_ms: now - 1_000,
      problem: "Can't reach the server",
      next_retry_ms: now + 7_400,
    };
    const i = syncIndicator(failing, now);
    expect(i.label).toBe("Can't reach the server; retrying in 8 s");
    expect(i.raw).toBe("connect: IO error: Connection refused (os error 111)");
    expect(i.detail).toBe("nothing waiting · last sync 5 s ago");
    expect(syncIndicator({ ...failing, next_retry_ms: now - 10 }, now).label).toBe("Can't reach the server; retrying now");
    expect(syncIndicator({ ...failing, next_retry_ms: null }, now).label).toBe("Can't reach the server");
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

describe("server health", () => {
  const well = {
    version: "0.1.0",
    git: "abc",
    started_at: "2026-12-05T10:00:00.000Z",
    uptime_s: 7_200,
    store: { kind: "sqlite", latency_ms: 0.4, schema_version: 8, expected_version: 8, migrations_pending: false },
    documents_loaded: 2,
    connections: 3,
    devices_online: 1,
    backups: { scheduled: true, every_s: 3_600, count: 2, last: { taken_at: "2026-12-05T11:30:00.000Z", age_s: 1_800, bytes: 4096 }, problem: null },
    security_alerts_24h: 0,
    last_security_alert: null,
  };

  it("spells out durations", () => {
    expect(duration(42)).toBe("42 s");
    expect(duration(300)).toBe("5 min");
    expect(duration(3_600)).toBe("1 h");
    expect(duration(12_000)).toBe("3 h 20 min");
    expect(duration(4 * 86_400 + 7_300)).toBe("4 d 2 h");
  });

  it("has nothing to say about a healthy server", () => {
    expect(healthConcerns(well)).toEqual([]);
  });

  it("names pending migrations, a slow store, overdue or unreadable backups and the day's alerts", () => {
    const sick = {
      ...well,
      store: { ...well.store, latency_ms: 250, schema_version: 7, migrations_pending: true },
      backups: { ...well.backups, last: { ...well.backups.last, age_s: 3 * 3_600 } },
      security_alerts_24h: 2,
      last_security_alert: { at: "2026-12-05T11:00:00.000Z", kind: "failed_code_burst", actor: "user:1" },
    };
    expect(healthConcerns(sick)).toEqual([
      "The store is at schema 7 and this server expects 8: run the migrations.",
      "The store took 250 ms to answer.",
      "The newest backup is 3 h old; one is due every 1 h.",
      "2 security alerts in the last 24 hours (newest: failed code burst, user:1).",
    ]);
    expect(healthConcerns({ ...well, backups: { ...well.backups, problem: "cannot list /x: denied" } })).toEqual([
      "Backups: cannot list /x: denied",
    ]);
    // None taken yet: a concern only once two periods have passed.
    const fresh = { ...well, backups: { ...well.backups, count: 0, last: null } };
    expect(healthConcerns({ ...fresh, uptime_s: 600 })).toEqual([]);
    expect(healthConcerns({ ...fresh, uptime_s: 3 * 3_600 })).toEqual(["No scheduled backup in 3 h of running."]);
  });
});

describe("list time rules", () => {
  const none = { valid_from_ms: null, valid_until_ms: null, weekdays: "", max_entries_per_day: null, exit_all_at: null };
  it("says none for a list without any", () => {
    expect(listTimeRules(none, String)).toBe("none");
  });
  it("names each rule in a few words", () => {
    const rules = { valid_from_ms: 1, valid_until_ms: 2, weekdays: "sat,sun", max_entries_per_day: 2, exit_all_at: "04:00" };
    expect(listTimeRules(rules, (ms) => `t${ms}`)).toBe("from t1 · until t2 · sat,sun · 2 a day · all out at 04:00");
  });
  it("reads and writes datetime-local values in the computer's zone", () => {
    const ms = localInputToMs("2026-12-05T18:30");
    expect(ms).not.toBeNull();
    expect(msToLocalInput(ms)).toBe("2026-12-05T18:30");
    expect(localInputToMs("")).toBeNull();
    expect(localInputToMs("not a date")).toBeNull();
    expect(msToLocalInput(null)).toBe("");
  });
});

describe("arrival chart", () => {
  it("fills the buckets around and between the first and the last, one series per list", () => {
    const min15 = 15 * 60_000;
    const { x, series } = arrivalSeries(
      [
        { list_id: "main", start_ms: 0, entries: 3 },
        { list_id: "vip", start_ms: 0, entries: 1 },
        { list_id: "main", start_ms: 3 * min15, entries: 2 },
      ],
      ["main", "vip"],
      15,
    );
    expect(x).toEqual([-900, 0, 900, 1800, 2700, 3600]);
    expect(series).toEqual([
      [0, 3, 0, 0, 2, 0],
      [0, 1, 0, 0, 0, 0],
    ]);
    expect(arrivalSeries([], ["main"], 15)).toEqual({ x: [], series: [[]] });
  });
  it("says gaps in seconds or minutes", () => {
    expect(gap(null)).toBe("—");
    expect(gap(2_500)).toBe("2.5 s");
    expect(gap(65_000)).toBe("1 min 5 s");
  });
});

describe("deviceName", () => {
  it("names a device by its record, or by its id's start", () => {
    const names = new Map([["96e05e74-aaaa", { name: "Door 2 tablet" }], ["blank-id-0000", { name: "" }]]);
    expect(deviceName(names, "96e05e74-aaaa")).toBe("Door 2 tablet");
    expect(deviceName(names, "0b28164d-bbbb")).toBe("0b28164d");
    expect(deviceName(names, "blank-id-0000")).toBe("blank-id");
  });
});

describe("readableRef", () => {
  const names = {
    users: new Map([["7a595531", "ada@example.org"]]),
    devices: new Map([["96e05e74", "Mo's phone"]]),
    events: new Map([["3aQsfR4E", "Summer Fest"]]),
  };
  it("names people, devices and events, keeping the id to hover", () => {
    expect(readableRef("user:7a595531", names)).toEqual({ text: "ada@example.org", title: "user:7a595531" });
    expect(readableRef("96e05e74", names).text).toBe("Mo's phone");
    expect(readableRef("3aQsfR4E", names).text).toBe("Summer Fest");
    expect(readableRef("device:96e05e74", names).text).toBe("Mo's phone");
    expect(readableRef("api_key:fixture", names).text).toBe("API key fixture");
  });
  it("leaves what it does not know as it is", () => {
    expect(readableRef("user:unknown", names)).toEqual({ text: "user:unknown", title: "user:unknown" });
    expect(readableRef("system", names).text).toBe("system");
    expect(readableRef(null, names)).toEqual({ text: "", title: "" });
  });
});
